-- Egress audit and versioned egress policies.
CREATE TABLE egress_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    egress_ip TEXT NOT NULL,
    task TEXT,
    destination TEXT NOT NULL,
    verdict TEXT NOT NULL,
    code TEXT,
    rule TEXT,
    reason TEXT,
    count BIGINT NOT NULL,
    bytes BIGINT NOT NULL DEFAULT 0,
    duration_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX egress_audit_at ON egress_audit (at);
CREATE INDEX egress_audit_verdict ON egress_audit (verdict, at);
CREATE TABLE egress_policies (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    yaml TEXT NOT NULL,
    mode TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    applied_by TEXT NOT NULL
);
-- Client certificate expiry per node identity, reported with heartbeats: [{identity, not_after}].
ALTER TABLE nodes ADD COLUMN certificates TEXT;
