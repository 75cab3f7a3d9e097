-- Switchyard state store. Written for SQLite; `store::migrate` adapts identity columns for
-- PostgreSQL, the only difference. Times are epoch milliseconds; JSON is TEXT.
CREATE TABLE jobs (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    schedule TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE job_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    state TEXT NOT NULL,
    trigger TEXT NOT NULL,
    slot BIGINT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    UNIQUE (job, slot)
);
CREATE INDEX job_runs_job ON job_runs (job, id);
CREATE INDEX job_runs_state ON job_runs (state);
CREATE TABLE task_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL,
    task TEXT NOT NULL,
    position BIGINT NOT NULL,
    state TEXT NOT NULL,
    compute TEXT NOT NULL,
    pools TEXT NOT NULL,
    spec TEXT NOT NULL,
    continuous BIGINT NOT NULL,
    max_retries BIGINT NOT NULL,
    backoff_ms BIGINT NOT NULL,
    max_backoff_ms BIGINT NOT NULL,
    timeout_ms BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    losses BIGINT NOT NULL DEFAULT 0,
    waiting TEXT,
    queued_at BIGINT,
    started_at BIGINT,
    finished_at BIGINT,
    error_class TEXT,
    message TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX task_runs_run ON task_runs (run_id, position);
CREATE INDEX task_runs_run_state ON task_runs (run_id, state);
CREATE INDEX task_runs_state ON task_runs (state);
CREATE TABLE task_deps (
    task_run_id BIGINT NOT NULL,
    dep_id BIGINT NOT NULL,
    PRIMARY KEY (task_run_id, dep_id)
);
CREATE INDEX task_deps_dep ON task_deps (dep_id);
-- Only leasable work: one row per eligible pool (or '*serverless') of each queued task.
CREATE TABLE queue (
    task_run_id BIGINT NOT NULL,
    pool TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    PRIMARY KEY (pool, task_run_id)
);
CREATE INDEX queue_task ON queue (task_run_id);
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_run_id BIGINT NOT NULL,
    number BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    state TEXT NOT NULL,
    queued_at BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    lease_expires_at BIGINT NOT NULL,
    finished_at BIGINT,
    exit_code BIGINT,
    error_class TEXT,
    message TEXT,
    log_tail TEXT
);
-- The store itself guarantees that a task never has two live attempts.
CREATE UNIQUE INDEX attempts_one_live ON attempts (task_run_id) WHERE state = 'running';
CREATE INDEX attempts_task ON attempts (task_run_id, number);
CREATE INDEX attempts_live ON attempts (state, lease_expires_at);
CREATE INDEX attempts_node ON attempts (node_id, state);
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    pool TEXT,
    egress_ip TEXT,
    identities TEXT NOT NULL,
    version TEXT NOT NULL,
    slots BIGINT NOT NULL,
    state TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    launched_at BIGINT,
    first_lease_at BIGINT
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE task_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_run_id BIGINT NOT NULL,
    attempt_id BIGINT,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    at BIGINT NOT NULL,
    reason TEXT
);
CREATE INDEX task_events_task ON task_events (task_run_id, id);
