// Switchyard dashboard: a hash-routed single page over the control plane's JSON API.
// No framework and no outside requests: everything here is served by the control plane itself.
// Text from the API is only ever inserted as text nodes (see `h`), never as HTML.
"use strict";

const POLL_MS = 3000;
const TOKEN_KEY = "switchyard.token";
let timer = null;
let lastBody = "";
let lastRoute = "";

// ---- tiny DOM helpers -------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const badge = (text, kind) => h("span", { class: `badge ${kind || text}` }, text);

/// Columns that hold numbers, right-aligned.
const NUMERIC = /^(#|runs|tasks|attempts|allowed|denied|bytes|days left|violations|slots in use|seconds|busy seconds|busy share|cost|saving|serverless cost|dedicated cost)$/i;

function table(headers, rows, opts) {
  const head = h("tr", {}, headers.map((x) => h("th", { scope: "col", class: NUMERIC.test(x) ? "num" : null }, x)));
  if (!rows.length) {
    return h("p", { class: "muted" }, (opts && opts.empty) || "Nothing yet.");
  }
  return h("table", { "aria-label": opts && opts.label }, h("thead", {}, head), h("tbody", {}, rows));
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr} h ${m % 60} min`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}

const ago = (now, at) => (at ? `${fmtDuration(Math.max(0, now - at))} ago` : "never");
const clock = (at) => (at ? new Date(at).toLocaleString() : "–");

// ---- API --------------------------------------------------------------------------------------

class HttpError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const res = await fetch(path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) throw new HttpError(res.status, body);
  return body;
}

/// Like `api`, but a route this control plane does not serve yields null instead of an error.
async function optional(path) {
  try { return await api(path); } catch (e) {
    if (e.status === 404 && e.body && e.body.code === "not_found") return null;
    throw e;
  }
}

// ---- pages ------------------------------------------------------------------------------------

async function overviewPage() {
  const [o, health] = await Promise.all([api("/api/v1/overview"), optional("/api/v1/health")]);
  const now = o.now;
  const page = [h("h1", {}, "Overview")];
  const grid = h("div", { class: "grid" });
  if (health) grid.append(healthCard(health));

  grid.append(h("section", { class: "card wide", "aria-labelledby": "jobs-h" },
    h("h2", { id: "jobs-h" }, "Jobs"),
    table(["Job", "Schedule", "Last run", "State", "Started", "Last success", "Runs"], o.jobs.map((j) => h("tr", {},
      h("td", {}, j.job),
      h("td", {}, j.schedule || h("span", { class: "muted" }, "on demand")),
      h("td", {}, j.last_run ? h("a", { href: `#/runs/${j.last_run.id}` }, `run ${j.last_run.id}`) : "–"),
      h("td", {}, j.last_run ? badge(j.last_run.state) : "–"),
      h("td", {}, j.last_run ? ago(now, j.last_run.created_at) : "–"),
      h("td", {}, ago(now, j.last_success_at)),
      h("td", { class: "num" }, j.runs),
    )), { label: "Jobs", empty: "No jobs submitted yet." })));

  grid.append(h("section", { class: "card wide", "aria-labelledby": "fail-h" },
    h("h2", { id: "fail-h" }, "Failures (last 24 h)"),
    table(["When", "Job / task", "Class", "What happened and what to do"], o.failures.map((f) => h("tr", { class: "failure" },
      h("td", {}, ago(now, f.at)),
      h("td", {}, h("a", { href: `#/runs/${f.run}` }, `${f.job} / ${f.task}`), " ", badge(f.state)),
      h("td", {}, f.class ? badge(f.class, "class") : "–"),
      h("td", {}, h("div", {}, f.message || ""), f.hint ? h("div", { class: "hint" }, `Hint: ${f.hint}`) : null),
    )), { label: "Failures", empty: "No failures in the last 24 hours." })));

  grid.append(h("section", { class: "card", "aria-labelledby": "queue-h" },
    h("h2", { id: "queue-h" }, "Queue"),
    table(["Compute", "Pool", "Tasks", "Why they wait"], o.queues.map((q) => h("tr", {},
      h("td", {}, q.compute),
      h("td", {}, q.pool || "–"),
      h("td", { class: "num" }, q.tasks),
      h("td", {}, q.reasons.length ? h("ul", {}, q.reasons.map((r) => h("li", {}, `${r.reason} (${r.tasks})`))) : h("span", { class: "muted" }, "nothing waiting")),
    )), { label: "Queue depth" })));

  const current = o.workers.length ? o.workers[o.workers.length - 1].workers : 0;
  grid.append(h("section", { class: "card", "aria-labelledby": "workers-h" },
    h("h2", { id: "workers-h" }, `Serverless workers, last hour (now ${current})`),
    workersChart(o.workers)));

  grid.append(h("section", { class: "card wide", "aria-labelledby": "nodes-h" },
    h("h2", { id: "nodes-h" }, "Dedicated nodes"),
    table(["Node", "Pool", "Egress IP", "Slots in use", "Last heartbeat", "State"], o.nodes.map((n) => h("tr", {},
      h("td", {}, n.id),
      h("td", {}, n.pool || "–"),
      h("td", {}, n.egress_ip || "–"),
      h("td", { class: "num" }, `${n.busy} / ${n.slots}`),
      h("td", {}, ago(now, n.heartbeat_at)),
      h("td", {}, n.live ? badge("live") : badge(n.state === "gone" ? "gone" : "silent", "failed")),
    )), { label: "Nodes", empty: "No dedicated nodes registered." })));

  page.push(grid);
  return page;
}

function healthCard(health) {
  const jobs = health.jobs || [];
  const pools = health.pools || [];
  const bad = [];
  for (const j of jobs) for (const c of j.checks || []) if (!c.ok) bad.push([j.job, c]);
  for (const p of pools) for (const c of p.checks || [p]) if (c.ok === false) bad.push([`pool ${p.pool || p.name || ""}`, c]);
  const status = health.status || (bad.some(([, c]) => c.severity === "critical") ? "critical" : bad.length ? "warning" : "ok");
  return h("section", { class: "card wide", "aria-labelledby": "health-h" },
    h("h2", { id: "health-h" }, "Health ", badge(status)),
    table(["Where", "Check", "Severity", "Finding", "Action"], bad.map(([where, c]) => h("tr", {},
      h("td", {}, where), h("td", {}, c.check || c.name || ""), h("td", {}, badge(c.severity || "warning")),
      h("td", {}, c.message || ""), h("td", {}, c.action || ""),
    )), { label: "Health checks", empty: `All ${jobs.length} jobs pass every check.` }));
}

function workersChart(points) {
  const W = 600, H = 140, pad = 24;
  const peak = Math.max(0, ...points.map((p) => p.workers));
  const max = Math.max(1, peak);
  const bw = (W - pad * 2) / Math.max(1, points.length);
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", class: "chart",
    "aria-label": `Serverless workers per minute; peak ${peak}` });
  svg.append(h("svg:line", { class: "axis", x1: pad, y1: H - pad, x2: W - pad, y2: H - pad }));
  points.forEach((p, i) => {
    const bh = ((H - pad * 2) * p.workers) / max;
    const bar = h("svg:rect", { class: "bar", x: pad + i * bw + 1, y: H - pad - bh, width: Math.max(1, bw - 2), height: bh });
    bar.append(h("svg:title", {}, `${new Date(p.at).toLocaleTimeString()}: ${p.workers} workers`));
    svg.append(bar);
  });
  svg.append(h("svg:text", { x: pad, y: H - 6 }, "-60 min"));
  svg.append(h("svg:text", { x: W - pad, y: H - 6, "text-anchor": "end" }, "now"));
  svg.append(h("svg:text", { x: 2, y: pad }, String(max)));
  return svg;
}

async function runsPage() {
  const runs = await api("/api/v1/runs?limit=50");
  return [h("h1", {}, "Runs"), h("section", { class: "card" }, table(
    ["Run", "Job", "State", "Trigger", "Created", "Duration", "Tasks"],
    runs.map((r) => h("tr", {},
      h("td", {}, h("a", { href: `#/runs/${r.id}` }, `run ${r.id}`)),
      h("td", {}, r.job), h("td", {}, badge(r.state)), h("td", {}, r.trigger),
      h("td", {}, clock(r.created_at)),
      h("td", {}, r.finished_at ? fmtDuration(r.finished_at - r.created_at) : "running"),
      h("td", {}, r.tasks.map((t) => badge(t.task, t.state))),
    )), { label: "Runs", empty: "No runs yet." }))];
}

async function runPage(id) {
  const r = await api(`/api/v1/runs/${encodeURIComponent(id)}`);
  const opts = r.options || {};
  const page = [
    h("h1", {}, `Run ${r.id}: ${r.job} `, badge(r.state)),
    h("section", { class: "card" }, h("dl", { class: "kv" },
      h("dt", {}, "Trigger"), h("dd", {}, r.trigger),
      h("dt", {}, "Created"), h("dd", {}, clock(r.created_at)),
      h("dt", {}, "Duration"), h("dd", {}, r.finished_at ? fmtDuration(r.finished_at - r.created_at) : "still running"),
      h("dt", {}, "Options"), h("dd", {}, opts.full_refresh ? "full refresh" : "incremental where possible"),
    )),
    h("section", { class: "card" }, h("h2", {}, "Tasks"), dag(r)),
  ];
  for (const t of r.tasks) page.push(taskCard(t));
  return page;
}

/// The run's DAG: columns by dependency depth, one box per task coloured by state; each box links
/// to the task's details below (Tab moves between them).
function dag(run) {
  const byName = new Map(run.tasks.map((t) => [t.task, t]));
  const depth = new Map();
  const depthOf = (t, seen = new Set()) => {
    if (depth.has(t.task)) return depth.get(t.task);
    if (seen.has(t.task)) return 0;
    seen.add(t.task);
    const deps = (t.depends_on || []).map((d) => byName.get(d)).filter(Boolean);
    const d = deps.length ? 1 + Math.max(...deps.map((x) => depthOf(x, seen))) : 0;
    depth.set(t.task, d);
    return d;
  };
  run.tasks.forEach((t) => depthOf(t));
  const cols = [];
  for (const t of run.tasks) (cols[depth.get(t.task)] ||= []).push(t);
  const BW = 230, BH = 48, GX = 60, GY = 18;
  const pos = new Map();
  cols.forEach((col, x) => col.forEach((t, y) => pos.set(t.task, { x: 10 + x * (BW + GX), y: 10 + y * (BH + GY) })));
  const W = 20 + cols.length * (BW + GX) - GX, H = 20 + Math.max(...cols.map((c) => c.length)) * (BH + GY) - GY;
  const colors = { succeeded: "#1f7a3d", failed: "#b42318", timed_out: "#b42318", upstream_failed: "#b42318",
    running: "#175cd3", queued: "#175cd3", retrying: "#a15c00", cancelled: "#a15c00" };
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, width: Math.min(W, 1300), class: "dag", role: "group",
    "aria-label": "Task graph" });
  for (const t of run.tasks) for (const d of t.depends_on || []) {
    const a = pos.get(d), b = pos.get(t.task);
    if (!a || !b) continue;
    svg.append(h("svg:path", { d: `M${a.x + BW},${a.y + BH / 2} C${a.x + BW + GX / 2},${a.y + BH / 2} ${b.x - GX / 2},${b.y + BH / 2} ${b.x},${b.y + BH / 2}`,
      fill: "none", stroke: "#98a2b3", "stroke-width": 1.5 }));
  }
  for (const t of run.tasks) {
    const p = pos.get(t.task);
    const c = colors[t.state] || "#667085";
    const link = h("svg:a", { href: `#/runs/${run.id}/${encodeURIComponent(t.task)}`, "aria-label": `${t.task}: ${t.state}, ${t.compute}` });
    link.append(h("svg:rect", { x: p.x, y: p.y, width: BW, height: BH, fill: `${c}1a`, stroke: c }));
    link.append(h("svg:text", { x: p.x + 8, y: p.y + 18, "font-weight": 600 }, t.task));
    link.append(h("svg:text", { x: p.x + 8, y: p.y + 36, fill: c }, `${t.state} · ${t.compute}${placement(t) ? " · " + placement(t) : ""}`));
    svg.append(link);
  }
  return svg;
}

function placement(t) {
  const a = t.attempts[t.attempts.length - 1];
  if (!a) return t.pools && t.pools.length ? t.pools[0] : "";
  return a.egress_ip ? `${a.egress_ip}` : "worker";
}

function taskCard(t) {
  const last = t.attempts[t.attempts.length - 1];
  const duration = t.started_at ? fmtDuration((t.finished_at || Date.now()) - t.started_at) : "–";
  const details = last && last.details;
  return h("section", { class: "card", id: `task-${t.task}`, tabindex: "-1", "aria-labelledby": `task-h-${t.task}` },
    h("h2", { id: `task-h-${t.task}` }, `${t.task} `, badge(t.state), " ", t.error_class ? badge(t.error_class, "class") : null),
    h("dl", { class: "kv" },
      h("dt", {}, "Class"), h("dd", {}, t.class || "–"),
      h("dt", {}, "Compute"), h("dd", {}, t.compute + (t.compute === "dedicated" && t.pools.length ? ` (pools: ${t.pools.join(", ")})` : "")),
      h("dt", {}, "Placement"), h("dd", {}, (t.reasons || []).length ? h("ul", {}, t.reasons.map((x) => h("li", {}, x))) : "–"),
      h("dt", {}, "Depends on"), h("dd", {}, (t.depends_on || []).join(", ") || "–"),
      h("dt", {}, "Duration"), h("dd", {}, duration),
      t.waiting ? [h("dt", {}, "Waiting"), h("dd", {}, t.waiting)] : null,
      t.message ? [h("dt", {}, "Message"), h("dd", { class: t.error_class ? "error" : null }, t.message)] : null,
      t.hint ? [h("dt", {}, "Hint"), h("dd", { class: "hint" }, t.hint)] : null,
    ),
    details ? detailsView(details) : null,
    h("h2", {}, "Attempts"),
    table(["#", "Node", "Egress IP", "State", "Queued for", "Ran for", "Class", "Message", "Retry"], t.attempts.map((a) => h("tr", {},
      h("td", { class: "num" }, a.number), h("td", {}, a.node_id), h("td", {}, a.egress_ip || "none (serverless)"),
      h("td", {}, badge(a.state)), h("td", {}, fmtDuration(a.started_at - a.queued_at)),
      h("td", {}, fmtDuration((a.finished_at || Date.now()) - a.started_at)),
      h("td", {}, a.error_class ? badge(a.error_class, "class") : "–"), h("td", {}, a.message || ""),
      h("td", {}, a.retry || "–"),
    )), { label: `Attempts of ${t.task}`, empty: "Not started yet." }),
    last && last.log_tail ? [h("h2", {}, "Log tail"), h("pre", { class: "log", tabindex: "0" }, last.log_tail)] : null,
  );
}

/// A transform's report: refresh mode and why, output version, expectation counts.
function detailsView(details) {
  const t = details.transform;
  if (!t) return h("pre", { class: "log" }, JSON.stringify(details, null, 2));
  const refresh = t.refresh || {};
  const out = t.output || {};
  return h("div", {},
    h("dl", { class: "kv" },
      h("dt", {}, "Refresh"), h("dd", {}, `${refresh.mode || "–"}${refresh.reason ? ": " + refresh.reason : ""}`),
      h("dt", {}, "Output"), h("dd", {}, out.table ? `${out.table} v${out.version} (${out.rows} rows)` : JSON.stringify(out)),
    ),
    (t.expectations || []).length ? table(["Expectation", "Action", "Check", "Violations"], t.expectations.map((e) => h("tr", {},
      h("td", {}, e.name), h("td", {}, e.action), h("td", {}, h("code", {}, e.check)), h("td", { class: "num" }, e.violations),
    )), { label: "Expectations" }) : null,
    t.distributed ? distributedView(t.distributed) : null);
}

/// `engine: distributed`: the Ballista job, its stages with their operators, and the executors.
function distributedView(d) {
  return h("section", { class: "distributed", "aria-label": "Distributed query" },
    h("h3", {}, "Distributed on Ballista"),
    h("dl", { class: "kv" },
      h("dt", {}, "Scheduler"), h("dd", {}, d.scheduler),
      h("dt", {}, "Job"), h("dd", {}, d.job ? d.job + (d.ran_ms != null ? ` (queued ${d.queued_ms} ms, ran ${d.ran_ms} ms on the executors)` : "") : "–"),
      h("dt", {}, "Executors"), h("dd", {}, (d.executors || []).length ? d.executors.join(", ") : "–"),
    ),
    table(["Stage", "Partitions", "Operators"], (d.stages || []).map((s) => h("tr", {},
      h("td", { class: "num" }, s.id), h("td", { class: "num" }, s.partitions),
      h("td", {}, h("pre", { class: "log" }, (s.operators || []).join("\n"))),
    )), { label: "Stages", empty: "The scheduler reported no stages." }));
}

async function egressPage() {
  const e = await api("/api/v1/egress/activity");
  const now = e.now;
  return [h("h1", {}, "Egress"), h("div", { class: "grid" },
    h("section", { class: "card wide", "aria-labelledby": "rules-h" },
      h("h2", { id: "rules-h" }, "Rules ", h("span", { class: "muted" }, e.source ? `from ${e.source}` : "none: every connection is denied")),
      table(["Rule", "Host", "Ports", "Egress IPs allowed", "Identity", "Why"], e.rules.map((r) => h("tr", {},
        h("td", {}, r.name), h("td", {}, r.host), h("td", {}, r.ports.join(", ")), h("td", {}, r.egress_ips.join(", ")),
        h("td", {}, r.identity || "–"), h("td", { class: "muted" }, r.description || ""),
      )), { label: "Egress rules" })),
    h("section", { class: "card", "aria-labelledby": "dest-h" },
      h("h2", { id: "dest-h" }, "Connections per destination (24 h)"),
      table(["Destination", "Allowed", "Denied", "Bytes", "Last"], e.destinations.map((d) => h("tr", {},
        h("td", {}, d.destination), h("td", { class: "num" }, d.allowed),
        h("td", { class: "num" }, d.denied ? badge(String(d.denied), "denied") : 0),
        h("td", { class: "num" }, d.bytes.toLocaleString()), h("td", {}, ago(now, d.last_at)),
      )), { label: "Connections per destination", empty: "No connections audited in the last 24 hours." })),
    h("section", { class: "card", "aria-labelledby": "id-h" },
      h("h2", { id: "id-h" }, "Client identities"),
      table(["Identity", "Node", "Pool", "Expires", "Days left"], e.identities.map((i) => h("tr", {},
        h("td", {}, i.identity), h("td", {}, i.node), h("td", {}, i.pool || "–"),
        h("td", {}, clock(i.not_after * 1000)),
        h("td", { class: "num" }, i.days_left < 0 ? badge("expired") : i.days_left < 30 ? badge(String(i.days_left), "warning") : i.days_left),
      )), { label: "Client identities", empty: "No node reported a client certificate." })),
    h("section", { class: "card wide", "aria-labelledby": "deny-h" },
      h("h2", { id: "deny-h" }, "Recent denials"),
      table(["When", "Task", "From", "Destination", "Verdict", "Code", "Why"], e.denials.map((d) => h("tr", { class: "denial" },
        h("td", {}, ago(now, d.at)), h("td", {}, d.task || "–"), h("td", {}, d.egress_ip), h("td", {}, d.destination),
        h("td", {}, badge(d.verdict)), h("td", {}, d.code || ""), h("td", {}, d.reason || ""),
      )), { label: "Recent denials", empty: "No denials." })),
  )];
}

async function costPage() {
  const c = await optional("/api/v1/cost?since=7d");
  if (!c) return [h("h1", {}, "Cost"), h("p", { class: "muted" }, "This control plane does not report costs.")];
  // Small runs cost fractions of a cent: keep three significant digits rather than show 0.00.
  const money = (x) => (x === null || x === undefined ? "–" : x !== 0 && Math.abs(x) < 1 ? x.toPrecision(3) : x.toFixed(2));
  const scenario = (name, s) => h("tr", {},
    h("th", { scope: "row" }, name),
    h("td", { class: "num" }, money(s.dedicated.cost)),
    h("td", { class: "num" }, money(s.serverless.cost)),
    h("td", { class: "num" }, h("strong", {}, money(s.total))),
    h("td", {}, s.allowed ? "" : badge("not allowed", "warning"), " ", h("span", { class: "arith" }, s.arithmetic),
      (s.blocked || []).length ? h("div", { class: "hint" }, `Blocked: ${s.blocked.map((b) => `${b.job}/${b.task} (${b.reason})`).join("; ")}`) : null,
      (s.notes || []).map((n) => h("div", { class: "hint" }, n))));
  const i = c.inputs;
  return [h("h1", {}, `Cost, last ${c.since}`), h("div", { class: "grid" },
    h("section", { class: "card wide", "aria-labelledby": "cost-h" },
      h("h2", { id: "cost-h" }, "What ran, against all-dedicated and all-serverless"),
      h("table", { "aria-label": "Cost scenarios" },
        h("thead", {}, h("tr", {}, ["Scenario", "Dedicated", "Serverless", "Total", "Arithmetic"].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, scenario("Actual (hybrid)", c.actual), scenario("All dedicated", c.all_dedicated), scenario("All serverless", c.all_serverless)))),
    h("section", { class: "card", "aria-labelledby": "prices-h" },
      h("h2", { id: "prices-h" }, "Prices and measured inputs"),
      h("dl", { class: "kv" },
        h("dt", {}, "Dedicated node-hour"), h("dd", {}, i.dedicated_node_hour),
        h("dt", {}, "Serverless vCPU-second"), h("dd", {}, i.serverless_vcpu_second),
        h("dt", {}, "vCPUs per worker"), h("dd", {}, i.vcpus_per_worker),
        h("dt", {}, "Cold start (median)"), h("dd", {}, i.cold_start_seconds === null ? "not measured" : `${i.cold_start_seconds.toFixed(2)} s over ${i.cold_starts_measured} workers`),
        h("dt", {}, "Peak serverless attempts"), h("dd", {}, i.peak_serverless_attempts),
        h("dt", {}, "Window"), h("dd", {}, `${c.window_hours.toFixed(2)} h`),
      ),
      (c.assumptions || []).length ? h("ul", {}, c.assumptions.map((a) => h("li", { class: "hint" }, a))) : null),
    h("section", { class: "card wide", "aria-labelledby": "rec-h" },
      h("h2", { id: "rec-h" }, "Recommendations"),
      table(["Task", "Move", "Saving", "Why"], c.recommendations.map((r) => h("tr", {},
        h("td", {}, `${r.job} / ${r.task}`), h("td", {}, `${r.from} → ${r.to}`, r.allowed ? "" : [" ", badge("not allowed", "warning")]),
        h("td", { class: "num" }, money(r.saving)), h("td", {}, r.message, r.change ? h("div", { class: "hint" }, `Change: ${r.change}`) : null),
      )), { label: "Recommendations", empty: "Every task runs on the cheaper class it is allowed." })),
    h("section", { class: "card wide", "aria-labelledby": "nodes-cost-h" },
      h("h2", { id: "nodes-cost-h" }, "Machines (node-hours and worker vCPU-seconds, idle included)"),
      table(["Machine", "Kind", "Pool", "Seconds", "Busy seconds", "Cost", "Arithmetic"], c.nodes.map((n) => h("tr", {},
        h("td", {}, n.id), h("td", {}, n.kind), h("td", {}, n.pool || "–"),
        h("td", { class: "num" }, n.seconds.toFixed(1)), h("td", { class: "num" }, n.busy_seconds.toFixed(1)),
        h("td", { class: "num" }, money(n.cost)), h("td", { class: "arith" }, n.arithmetic),
      )), { label: "Machines", empty: "No machines in the window." })),
    h("section", { class: "card wide", "aria-labelledby": "tasks-cost-h" },
      h("h2", { id: "tasks-cost-h" }, "Tasks"),
      table(["Task", "Compute", "Attempts", "Busy seconds", "Busy share", "Serverless cost", "Dedicated cost", "Serverless allowed"], c.tasks.map((t) => h("tr", {},
        h("td", {}, `${t.job} / ${t.task}`), h("td", {}, t.compute + (t.continuous ? " (continuous)" : "")),
        h("td", { class: "num" }, t.attempts), h("td", { class: "num" }, t.busy_seconds.toFixed(1)),
        h("td", { class: "num" }, `${(t.busy_share * 100).toFixed(1)} %`),
        h("td", { class: "num", title: t.serverless_arithmetic }, money(t.serverless_cost)),
        h("td", { class: "num", title: t.dedicated_arithmetic }, money(t.dedicated_cost)),
        h("td", {}, t.serverless_allowed ? "yes" : (t.why_not_serverless || "no")),
      )), { label: "Task costs", empty: "No attempts in the window." })),
  )];
}

// ---- routing, polling and sign-in -------------------------------------------------------------

function route() {
  const path = (location.hash || "#/").slice(1);
  const m = path.match(/^\/runs\/(\d+)(?:\/(.+))?$/);
  if (m) return { name: "runs", key: `run/${m[1]}`, render: () => runPage(m[1]), focus: m[2] && `task-${decodeURIComponent(m[2])}` };
  if (path.startsWith("/runs")) return { name: "runs", key: "runs", render: runsPage };
  if (path.startsWith("/egress")) return { name: "egress", key: "egress", render: egressPage };
  if (path.startsWith("/cost")) return { name: "cost", key: "cost", render: costPage };
  return { name: "overview", key: "overview", render: overviewPage };
}

async function refresh(userAction) {
  clearTimeout(timer);
  const r = route();
  for (const a of document.querySelectorAll("header nav a")) {
    if (a.dataset.page === r.name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const status = document.getElementById("status");
  try {
    const nodes = await r.render();
    const holder = h("div", {}, nodes);
    // Re-render only on change, so polling does not steal focus or scroll from the reader.
    const body = holder.innerHTML;
    if (body !== lastBody || r.key !== lastRoute) {
      const focused = document.activeElement && document.activeElement.id;
      const page = document.getElementById("page");
      page.replaceChildren(...holder.childNodes);
      lastBody = body;
      if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    }
    if (userAction && r.focus && document.getElementById(r.focus)) {
      document.getElementById(r.focus).focus();
      document.getElementById(r.focus).scrollIntoView({ block: "start" });
    } else if (userAction && r.key !== lastRoute) {
      document.getElementById("main").focus();
    }
    lastRoute = r.key;
    document.getElementById("login").hidden = true;
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    status.classList.remove("error");
  } catch (e) {
    if (e.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(sessionStorage.getItem(TOKEN_KEY) ? "" : e.message);
      return;
    }
    status.textContent = `update failed: ${e.message}`;
    status.classList.add("error");
  }
  if (!document.hidden) timer = setTimeout(() => refresh(false), POLL_MS);
}

function showLogin(message) {
  document.getElementById("page").replaceChildren();
  lastBody = "";
  const form = document.getElementById("login");
  form.hidden = false;
  document.getElementById("login-error").textContent = message && message !== "missing bearer token" ? message : "";
  document.getElementById("token").focus();
}

document.getElementById("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
  refresh(true);
});

// `#token=…` (what `switchyard demo --keep-running` prints) signs in and is removed from the
// address bar at once; a fragment never reaches the server or its logs.
if (location.hash.startsWith("#token=")) {
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(location.hash.slice(7)));
  history.replaceState(null, "", `${location.pathname}#/`);
}

window.addEventListener("hashchange", () => refresh(true));
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(false); });
document.addEventListener("keydown", (ev) => {
  if (ev.target.closest("input, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const pages = { 1: "#/", 2: "#/runs", 3: "#/egress", 4: "#/cost" };
  if (pages[ev.key]) { location.hash = pages[ev.key]; ev.preventDefault(); }
});
refresh(true);
