//! The runtime end to end with real processes: `switchyard serve`, `node`, `worker` and `run`,
//! against SQLite and the PostgreSQL server on 127.0.0.1:5432 (a fresh database per test, dropped
//! afterwards). Nodes use loopback addresses (127.0.0.2, 127.0.0.3, 127.0.0.4) as static egress IPs.
//! `exactly_once` also ingests from PostgreSQL, a Kafka-protocol broker and nginx while it kills
//! node agents. `netns` runs nodes and workers in Linux network namespaces behind a partner
//! firewall (root, iproute2, nftables).

mod chain;
mod distributed;
mod event_log;
mod exactly_once;
mod harness;
mod maintenance;
mod netns;
mod scenarios;
mod serverless;
