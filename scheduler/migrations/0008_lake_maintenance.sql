-- Scheduled lake maintenance (`[[lake.maintenance]]`, the event log's compaction). The replica
-- that inserts the row for a (table, slot) runs it; every other replica's insert finds it there,
-- so each slot runs once however many replicas share the store and whenever they restart.
CREATE TABLE lake_maintenance (
    target TEXT NOT NULL,
    slot BIGINT NOT NULL,
    owner TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    outcome TEXT,
    message TEXT,
    PRIMARY KEY (target, slot)
);
