-- Per-run options (full refresh, pinned input versions) that leases carry to the agent; what an
-- attempt reports about its work beyond success (a transform's refresh mode, expectations); and
-- data-triggered runs waiting out their debounce or a run of the same task still in flight.
ALTER TABLE job_runs ADD COLUMN options TEXT;
ALTER TABLE attempts ADD COLUMN details TEXT;
CREATE TABLE pending_triggers (
    job TEXT NOT NULL,
    task TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job, task)
);
CREATE INDEX pending_triggers_due ON pending_triggers (due_at);
-- Which registered `on_update` tasks read which table, kept with the job definitions, so a commit
-- finds its readers without parsing every job's spec.
CREATE TABLE trigger_reads (
    table_name TEXT NOT NULL,
    job TEXT NOT NULL,
    task TEXT NOT NULL,
    PRIMARY KEY (table_name, job, task)
);
CREATE INDEX trigger_reads_job ON trigger_reads (job);
