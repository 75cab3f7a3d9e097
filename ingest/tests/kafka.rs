//! The Kafka source against a real Kafka-protocol broker (tansu, started by scripts/test;
//! `SWITCHYARD_TEST_KAFKA` names its bootstrap address, default 127.0.0.1:19092). Each test uses
//! its own topic: offsets resumed from the table, triggered mode ending at the offsets seen at
//! start, poison messages to `__dlq` with the rest of the partition ingested, the egress check.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Recorder, context, count, dialer, int64s, table};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use switchyard_config::FailureClass;
use switchyard_config::manifest::{SinkSpec, Source};
use switchyard_ingest::run;
use switchyard_lake::Lake;

fn broker() -> String {
    std::env::var("SWITCHYARD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

fn port() -> u16 {
    broker().rsplit(':').next().unwrap().parse().unwrap()
}

fn unique(prefix: &str) -> String {
    switchyard_testkit::unique_name(&format!("{prefix}-"))
}

async fn create_topic(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker()).create().expect("admin client");
    let result = admin
        .create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap_or_else(|e| panic!("cannot create topic on {} (scripts/test starts tansu): {e}", broker()));
    for r in result {
        r.unwrap();
    }
}

/// Produces `messages` (partition, payload), waiting until all are acknowledged.
fn produce(topic: &str, messages: impl Iterator<Item = (i32, Vec<u8>)>) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for (partition, payload) in messages {
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(&payload[..]).partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

fn source(topic: &str, group: &str) -> Source {
    serde_json::from_value(serde_json::json!({"kafka": {
        "brokers": [broker()], "topic": topic, "group": group, "format": "json",
    }}))
    .unwrap()
}

fn sink(table: &str, rows: u64) -> SinkSpec {
    serde_json::from_value(serde_json::json!({"table": table, "flush": {"rows": rows, "interval": "1s"}}))
        .unwrap()
}

fn event(id: i64) -> Vec<u8> {
    format!(r#"{{"id": {id}, "kind": "visit", "amount": {}.5, "member": "m{}"}}"#, id % 1000, id % 97)
        .into_bytes()
}

#[tokio::test]
async fn triggered_ingest_resumes_from_table_offsets_and_sends_poison_to_dlq() {
    let topic = unique("events");
    create_topic(&topic, 3).await;
    // 30,000 events over 3 partitions, with two poison messages in partition 1.
    produce(
        &topic,
        (0..30_000i64).map(|id| {
            let partition = (id % 3) as i32;
            if id == 10_000 || id == 20_002 { (1, b"{not json".to_vec()) } else { (partition, event(id)) }
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap()).unwrap();
    let t = table("bronze.events");
    let ctx = context(&lake, dialer("127.0.0.1", port(), "127.0.0.1"), "events", 1);
    let summary = run(
        &source(&topic, &unique("g")),
        &sink("bronze.events", 4_000),
        &ctx,
        Arc::new(Recorder::default()),
    )
    .await
    .unwrap();
    assert_eq!(summary.rows, 29_998);
    assert_eq!(summary.dead_letters, 2);
    assert!(summary.commits >= 3, "{summary:?}");
    let rows = lake.read(&t, None).await.unwrap();
    let ids: std::collections::HashSet<i64> = int64s(&rows, "id").into_iter().flatten().collect();
    assert_eq!(ids.len(), 29_998, "no duplicates");
    assert!(!ids.contains(&10_000) && ids.contains(&10_003) && ids.contains(&29_998));
    let dlq = lake.read(&table("bronze.events__dlq"), None).await.unwrap();
    assert_eq!(count(&dlq), 2);
    let offsets = int64s(&dlq, "offset");
    assert!(offsets.iter().all(Option::is_some));

    // More messages (one poison): the next run starts where the table's offsets say.
    produce(
        &topic,
        (30_000..33_000i64)
            .map(|id| ((id % 3) as i32, if id == 31_000 { b"42".to_vec() } else { event(id) })),
    );
    let ctx2 = context(&lake, dialer("127.0.0.1", port(), "127.0.0.1"), "events", 2);
    let second = run(
        &source(&topic, &unique("g")),
        &sink("bronze.events", 4_000),
        &ctx2,
        Arc::new(Recorder::default()),
    )
    .await
    .unwrap();
    assert_eq!((second.rows, second.dead_letters), (2_999, 1));
    assert_eq!(count(&lake.read(&t, None).await.unwrap()), 29_998 + 2_999);
    assert_eq!(count(&lake.read(&table("bronze.events__dlq"), None).await.unwrap()), 3);
}

/// An attempt dropped mid-stream (the node died) leaves whole commits; the next attempt resumes
/// from the offsets in the table, including the dead letters already written.
#[tokio::test]
async fn a_dropped_attempt_resumes_exactly() {
    let topic = unique("drop");
    create_topic(&topic, 2).await;
    produce(
        &topic,
        (0..60_000i64)
            .map(|id| ((id % 2) as i32, if id % 10_000 == 7 { b"oops".to_vec() } else { event(id) })),
    );
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap()).unwrap();
    let t = table("bronze.drop");
    let progress = Arc::new(Recorder::default());
    let ctx = context(&lake, dialer("127.0.0.1", port(), "127.0.0.1"), "drop", 1);
    let spec = source(&topic, &unique("g"));
    let s = sink("bronze.drop", 5_000);
    let attempt = run(&spec, &s, &ctx, progress.clone());
    let watcher = async {
        while progress.commits.lock().unwrap().iter().filter(|c| c.0 == "bronze.drop").count() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        r = attempt => panic!("should have been interrupted: {r:?}"),
        () = watcher => {}
    }
    run(&spec, &s, &ctx, Arc::new(Recorder::default())).await.unwrap();
    let ids: Vec<i64> = int64s(&lake.read(&t, None).await.unwrap(), "id").into_iter().flatten().collect();
    let unique_ids: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), 60_000 - 6);
    assert_eq!(unique_ids.len(), ids.len());
    let dlq = int64s(&lake.read(&table("bronze.drop__dlq"), None).await.unwrap(), "offset");
    assert_eq!(dlq.len(), 6, "each poison message once: {dlq:?}");
}

#[tokio::test]
async fn brokers_outside_the_egress_policy_are_refused() {
    let topic = unique("denied");
    create_topic(&topic, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap()).unwrap();
    // The policy allows another port only.
    let ctx = context(&lake, dialer("127.0.0.1", 1, "127.0.0.1"), "denied", 1);
    let e = run(&source(&topic, "g"), &sink("bronze.denied", 10), &ctx, Arc::new(Recorder::default()))
        .await
        .unwrap_err();
    assert_eq!(e.class(), FailureClass::Access, "{e}");

    let ctx = context(&lake, dialer("127.0.0.1", port(), "127.0.0.1"), "missing", 1);
    let e = run(
        &source("no-such-topic-sy", "g"),
        &sink("bronze.missing", 10),
        &ctx,
        Arc::new(Recorder::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.class(), FailureClass::Data, "{e}");
    assert!(e.to_string().contains("no-such-topic-sy"), "{e}");
}
