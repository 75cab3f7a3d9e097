"""The transform benchmarks' queries in polars, over the same Delta tables. Prints one JSON line:
seconds, output rows and peak RSS (ru_maxrss) of this process.

`transform_polars.py LAKE OUT [MODE]`, MODE one of:
- `in-memory` (default; the 10M `transform` bench): filter, join to the dimension, group-by
  aggregate, collected by polars' default engine and written to Delta with deltalake;
- `streaming` (`transform-large`): the same query collected with the streaming engine;
- `wide` (`transform-wide`): the filtered projection minus implausible amounts (switchyard's
  `drop` expectation), streamed into Delta with `sink_delta`.
"""
import json
import resource
import sys
import time

import polars as pl

lake, out = sys.argv[1], sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "in-memory"
started = time.perf_counter()
facts = pl.scan_delta(f"{lake}/bench/facts")
if mode == "wide":
    facts.filter((pl.col("amount") > 10.0) & (pl.col("amount") < 490.0)).select(
        ["claim_id", "member_id", "amount", "status"]
    ).sink_delta(out, mode="overwrite")
    rows = None
else:
    members = pl.scan_delta(f"{lake}/bench/members")
    query = (
        facts.filter((pl.col("status") == "paid") & (pl.col("amount") > 10.0))
        .join(members, on="member_id", how="inner")
        .group_by(["region", "segment"])
        .agg(
            pl.len().alias("claims"),
            pl.col("amount").sum().alias("total"),
            pl.col("amount").mean().alias("mean"),
        )
    )
    result = query.collect(engine="streaming") if mode == "streaming" else query.collect()
    result.write_delta(out, mode="overwrite")
    rows = result.height
seconds = time.perf_counter() - started
if rows is None:
    # Counted after the clock stops: reading the output back is not part of the run.
    rows = pl.scan_delta(out).select(pl.len()).collect().item()
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "rows": rows, "peak_kib": peak_kib, "polars": pl.__version__}))
