//! The NATS JetStream broker against a real NATS server (`SLUICE_TEST_NATS`, default
//! `nats://127.0.0.1:4222`); an unreachable server fails the tests. Each test runs two brokers
//! ("nodes") on a stream and subject prefix of its own and deletes the stream at the end.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::value::RawValue;
use sluice_events::broker::RemoteEvents;
use sluice_events::broker::nats::DEFAULT_URL;
use sluice_events::{Broker, NatsBroker, NatsOptions, RoutingKey, StoredEvent, TopicName};

/// How long to wait for announcements that must arrive.
const ARRIVAL: Duration = Duration::from_secs(20);
/// How long to watch for announcements that must not arrive.
const QUIET: Duration = Duration::from_millis(500);

fn url() -> String {
    std::env::var("SLUICE_TEST_NATS").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Two nodes on a fresh stream; runs `test`, then deletes the stream whether `test` passed
/// or not.
async fn with_two_nodes<F, Fut>(label: &str, test: F)
where
    F: FnOnce(Arc<NatsBroker>, Arc<NatsBroker>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let url = url();
    let options = NatsOptions::isolated(label);
    let connect = |options| {
        let url = url.clone();
        async move {
            match NatsBroker::connect(&url, options).await {
                Ok(broker) => Arc::new(broker),
                Err(e) => panic!(
                    "NATS with JetStream is needed at {url} (set SLUICE_TEST_NATS): {}",
                    chain(&e)
                ),
            }
        }
    };
    let a = connect(options.clone()).await;
    let b = connect(options).await;
    let outcome = tokio::spawn(test(a.clone(), b.clone())).await;
    a.delete_stream().await.expect("deleting the test stream");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn topic(name: &str) -> TopicName {
    TopicName::new(name).expect("a valid topic name")
}

fn event(topic_name: &str, seq: u64, payload: &str) -> Arc<StoredEvent> {
    let timestamp: DateTime<Utc> =
        DateTime::from_timestamp_micros(1_767_225_600_123_456 + seq as i64 * 1_001)
            .expect("a timestamp in range");
    Arc::new(StoredEvent {
        topic: topic(topic_name),
        seq,
        id: format!("id-{topic_name}-{seq}"),
        routing_key: RoutingKey::new(&format!("hub1.chan_{}.refresh", seq % 3))
            .expect("a valid routing key"),
        timestamp,
        posted_by: seq.is_multiple_of(2).then(|| format!("user{seq}")),
        payload: RawValue::from_string(payload.to_owned()).expect("valid JSON"),
    })
}

/// Reads batches from `remote` until `count` events have arrived.
async fn receive(remote: &mut RemoteEvents, count: usize) -> Vec<StoredEvent> {
    let mut events = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    while events.len() < count {
        match tokio::time::timeout_at(deadline, remote.next()).await {
            Ok(Some(batch)) => events.extend(batch),
            Ok(None) => panic!("remote events ended after {} events", events.len()),
            Err(_) => panic!(
                "only {} of {count} events arrived within {ARRIVAL:?}",
                events.len()
            ),
        }
    }
    events
}

/// Fails if anything arrives on `remote` within [`QUIET`].
async fn expect_quiet(remote: &mut RemoteEvents, whose: &str) {
    if let Ok(batch) = tokio::time::timeout(QUIET, remote.next()).await {
        let seqs: Vec<_> = batch
            .into_iter()
            .flatten()
            .map(|e| (e.topic.to_string(), e.seq))
            .collect();
        panic!("{whose} received unexpected events: {seqs:?}");
    }
}

fn assert_same(got: &StoredEvent, sent: &StoredEvent) {
    assert_eq!(got.topic, sent.topic);
    assert_eq!(got.seq, sent.seq);
    assert_eq!(got.id, sent.id);
    assert_eq!(got.routing_key, sent.routing_key);
    assert_eq!(got.timestamp, sent.timestamp);
    assert_eq!(got.posted_by, sent.posted_by);
    assert_eq!(got.payload.get(), sent.payload.get());
}

#[tokio::test]
async fn events_reach_the_other_node_in_order_exactly_once() {
    with_two_nodes("order", |a, b| async move {
        assert_eq!(a.name(), "nats");
        assert!(a.is_remote());
        assert_ne!(a.node_id(), b.node_id());
        let mut at_a = a.remote_events().await.expect("node a's receiver");
        let mut at_b = b.remote_events().await.expect("node b's receiver");

        // Topics whose names a careless subject encoding would merge.
        let payloads = [
            r#"{"n":1,"text":"grüße, 世界 \"quoted\""}"#,
            r#"[1,2.5,null,true]"#,
            r#""just a string""#,
            r#"{"nested":{"deep":[{"x":1e-7}]}}"#,
        ];
        let mut sent = Vec::new();
        for seq in 1..=20u64 {
            for name in ["orders.eu", "orders_eu", "orders-eu"] {
                sent.push(event(name, seq, payloads[seq as usize % payloads.len()]));
            }
        }
        a.announce(&sent[..30])
            .await
            .expect("announcing, first call");
        a.announce(&sent[30..])
            .await
            .expect("announcing, second call");

        let got = receive(&mut at_b, sent.len()).await;
        for (got, sent) in got.iter().zip(&sent) {
            assert_same(got, sent);
        }
        assert_ne!(
            sent[0].timestamp.timestamp_subsec_micros() % 1000,
            0,
            "the test's timestamps carry microseconds"
        );
        expect_quiet(&mut at_b, "node b (after all of a's events)").await;

        // Node a hears node b, and nothing of its own before that.
        let marker = event("orders.eu", 21, r#"{"from":"b"}"#);
        b.announce(std::slice::from_ref(&marker))
            .await
            .expect("announcing from b");
        let got = receive(&mut at_a, 1).await;
        assert_same(&got[0], &marker);
        expect_quiet(&mut at_a, "node a").await;
        expect_quiet(&mut at_b, "node b (its own event)").await;
    })
    .await;
}

#[tokio::test]
async fn a_batch_of_5000_arrives_complete_and_in_order() {
    with_two_nodes("batch", |a, b| async move {
        const COUNT: u64 = 5000;
        let mut at_b = b.remote_events().await.expect("node b's receiver");
        let payload = r#"{"table":"orders","rows":1234,"state":"done","note":"a payload of a typical size for a job event"}"#;
        let sent: Vec<_> = (1..=COUNT)
            .map(|seq| {
                let name = if seq.is_multiple_of(2) { "sluice.job" } else { "sluice.event" };
                event(name, seq, payload)
            })
            .collect();

        let started = Instant::now();
        a.announce(&sent).await.expect("announcing 5,000 events");
        let announced = started.elapsed();
        let got = receive(&mut at_b, sent.len()).await;
        let received = started.elapsed();
        eprintln!(
            "5,000 events: announce {:.1} ms, announce to last received {:.1} ms, {:.0} events/s",
            announced.as_secs_f64() * 1e3,
            received.as_secs_f64() * 1e3,
            COUNT as f64 / received.as_secs_f64()
        );

        for (got, sent) in got.iter().zip(&sent) {
            assert_same(got, sent);
        }
        expect_quiet(&mut at_b, "node b (after the batch)").await;
    })
    .await;
}

#[tokio::test]
async fn a_stream_over_other_subjects_is_refused() {
    let url = url();
    let options = NatsOptions::isolated("clash");
    let broker = NatsBroker::connect(&url, options.clone())
        .await
        .unwrap_or_else(|e| panic!("NATS with JetStream is needed at {url}: {}", chain(&e)));
    let other = NatsOptions {
        subject_prefix: format!("{}.other", options.subject_prefix),
        ..options
    };
    let refused = NatsBroker::connect(&url, other).await;
    broker
        .delete_stream()
        .await
        .expect("deleting the test stream");
    let e = refused.expect_err("a stream that does not capture the prefix");
    assert_eq!(e.kind(), sluice_events::ErrorKind::Conflict);
}
