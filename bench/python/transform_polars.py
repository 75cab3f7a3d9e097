"""The transform benchmark's query in polars, over the same Delta tables: filter, join to the
dimension, group-by aggregate, written to a Delta table. Prints one JSON line: seconds, output
rows and peak RSS (ru_maxrss) of this process."""
import json
import resource
import sys
import time

import polars as pl

lake = sys.argv[1]
out = sys.argv[2]
started = time.perf_counter()
facts = pl.scan_delta(f"{lake}/bench/facts")
members = pl.scan_delta(f"{lake}/bench/members")
result = (
    facts.filter((pl.col("status") == "paid") & (pl.col("amount") > 10.0))
    .join(members, on="member_id", how="inner")
    .group_by(["region", "segment"])
    .agg(
        pl.len().alias("claims"),
        pl.col("amount").sum().alias("total"),
        pl.col("amount").mean().alias("mean"),
    )
    .collect()
)
result.write_delta(out, mode="overwrite")
seconds = time.perf_counter() - started
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "rows": result.height, "peak_kib": peak_kib, "polars": pl.__version__}))
