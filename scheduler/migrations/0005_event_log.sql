-- The event log's outbox. Events are written in the same transaction as the change they describe
-- (a task transition, a node registered or lost, a run finished, an egress denial), so a crash
-- never records one without the other. `sequence` is given by the exporter, under its lease, in
-- the order rows became visible, and is gapless: 1, 2, 3, … It is what the Delta table
-- `_switchyard/event_log` is keyed and exported by (Delta txn `switchyard/event_log`).
CREATE TABLE event_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sequence BIGINT,
    at BIGINT NOT NULL,
    origin TEXT NOT NULL,
    level TEXT NOT NULL,
    event_type TEXT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    task_run_id BIGINT
);
CREATE UNIQUE INDEX event_log_sequence ON event_log (sequence);
CREATE INDEX event_log_unsequenced ON event_log (id) WHERE sequence IS NULL;
-- One row: the exporter's lease (one exporting replica at a time) and cursor. `assigned` is the
-- last sequence given to a row, `exported` the last one known to be in the Delta table.
CREATE TABLE event_log_export (
    name TEXT PRIMARY KEY,
    assigned BIGINT NOT NULL,
    exported BIGINT NOT NULL,
    owner TEXT,
    lease_expires_at BIGINT NOT NULL
);
INSERT INTO event_log_export (name, assigned, exported, owner, lease_expires_at) VALUES ('event_log', 0, 0, NULL, 0);
