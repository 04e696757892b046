// Each test crate uses a different part of this module.
#![allow(dead_code)]

//! What the broker tests (`nats.rs`, `amqp.rs`) share: test events, receiving with deadlines,
//! and the checks every broker must pass the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::value::RawValue;
use sluice_events::broker::RemoteEvents;
use sluice_events::{Broker, RoutingKey, StoredEvent, TopicName};

/// How long to wait for announcements that must arrive.
pub const ARRIVAL: Duration = Duration::from_secs(20);
/// How long to watch for announcements that must not arrive.
pub const QUIET: Duration = Duration::from_millis(500);

/// An error with its sources, one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub fn topic(name: &str) -> TopicName {
    TopicName::new(name).expect("a valid topic name")
}

/// A stored event of `topic_name` with routing key `key`; its timestamp carries microseconds.
pub fn event_with_key(topic_name: &str, seq: u64, key: &str, payload: &str) -> Arc<StoredEvent> {
    let timestamp: DateTime<Utc> =
        DateTime::from_timestamp_micros(1_767_225_600_123_456 + seq as i64 * 1_001)
            .expect("a timestamp in range");
    Arc::new(StoredEvent {
        topic: topic(topic_name),
        seq,
        id: format!("id-{topic_name}-{seq}"),
        routing_key: RoutingKey::new(key).expect("a valid routing key"),
        timestamp,
        posted_by: seq.is_multiple_of(2).then(|| format!("user{seq}")),
        payload: RawValue::from_string(payload.to_owned()).expect("valid JSON"),
    })
}

/// A stored event with one of three routing keys (`hub1.chan_{seq % 3}.refresh`).
pub fn event(topic_name: &str, seq: u64, payload: &str) -> Arc<StoredEvent> {
    event_with_key(
        topic_name,
        seq,
        &format!("hub1.chan_{}.refresh", seq % 3),
        payload,
    )
}

/// Reads batches from `remote` until `count` events have arrived.
pub async fn receive(remote: &mut RemoteEvents, count: usize) -> Vec<StoredEvent> {
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
pub async fn expect_quiet(remote: &mut RemoteEvents, whose: &str) {
    if let Ok(batch) = tokio::time::timeout(QUIET, remote.next()).await {
        let seqs: Vec<_> = batch
            .into_iter()
            .flatten()
            .map(|e| (e.topic.to_string(), e.seq))
            .collect();
        panic!("{whose} received unexpected events: {seqs:?}");
    }
}

pub fn assert_same(got: &StoredEvent, sent: &StoredEvent) {
    assert_eq!(got.topic, sent.topic);
    assert_eq!(got.seq, sent.seq);
    assert_eq!(got.id, sent.id);
    assert_eq!(got.routing_key, sent.routing_key);
    assert_eq!(got.timestamp, sent.timestamp);
    assert_eq!(got.posted_by, sent.posted_by);
    assert_eq!(got.payload.get(), sent.payload.get());
}

/// 5,000 events announced by `a` in one call all reach `b`, whole and in order, and nothing
/// more; prints the rate.
pub async fn a_batch_of_5000_arrives_complete_and_in_order(a: &dyn Broker, b: &dyn Broker) {
    const COUNT: u64 = 5000;
    let mut at_b = b.remote_events().await.expect("node b's receiver");
    let payload = r#"{"table":"orders","rows":1234,"state":"done","note":"a payload of a typical size for a job event"}"#;
    let sent: Vec<_> = (1..=COUNT)
        .map(|seq| {
            let name = if seq.is_multiple_of(2) {
                "sluice.job"
            } else {
                "sluice.event"
            };
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
}
