-- Delta versions committed by ingestion attempts, as nodes report them (the Delta log is the
-- truth; this is what the scheduler knows of it, for triggers and the dashboard).
CREATE TABLE lake_commits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    attempt_id BIGINT NOT NULL,
    table_name TEXT NOT NULL,
    version BIGINT NOT NULL,
    rows_added BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE UNIQUE INDEX lake_commits_version ON lake_commits (table_name, version);
CREATE INDEX lake_commits_attempt ON lake_commits (attempt_id);
