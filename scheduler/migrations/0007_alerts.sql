-- Alert notifications per health check and webhook, shared by control-plane replicas: a
-- notification is sent by whichever replica's conditional upsert claims it, so each goes out once.
CREATE TABLE alerts (
    -- `job/<job>/<check>` or `pool/<pool>/<check>`.
    alert TEXT NOT NULL,
    -- The webhook: a hash of its URL (the URL itself is often a credential).
    target TEXT NOT NULL,
    -- `firing` or `resolved`.
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    -- When this episode of failing began (epoch ms).
    since BIGINT NOT NULL,
    -- When the last notification was claimed; NULL when none was delivered yet.
    sent_at BIGINT,
    -- Notifications of this episode (1 = the first).
    sent_count BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (alert, target)
);
CREATE INDEX alerts_open ON alerts (target, state);
