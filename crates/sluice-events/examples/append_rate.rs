//! How fast events are stored: 10,000-event appends straight to a store, then batched publishes
//! through the hub (validation, group commit, fan-out) by several concurrent publishers.
//!
//! ```text
//! cargo run --release -p sluice-events --example append_rate -- [STORE_SPEC]
//! ```
//! STORE_SPEC is what `open_event_store` takes (`postgres://…`, `sqlite:PATH`); without it, a
//! SQLite file in a temporary directory. Use an empty, throwaway database: the example creates
//! topics named `bench-<random>` and leaves them.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use serde_json::json;
use serde_json::value::RawValue;
use sluice_events::event::Append;
use sluice_events::store::open_event_store;
use sluice_events::{
    Actor, EventHub, EventStore, HubConfig, InProcessBroker, NewEvent, RoutingKey, TopicName,
    TopicSpec,
};
use sluice_model::AccessLevel;

const BATCH: usize = 10_000;
const ROUNDS: usize = 10;
const PUBLISHERS: usize = 4;
const PUBLISH_BATCH: usize = 1_000;
const PUBLISH_CALLS: usize = 50;

fn key(i: usize) -> RoutingKey {
    RoutingKey::new(&format!("plant{}.line{}.temp", i % 10, i % 7)).unwrap()
}

async fn store_rate(store: &dyn EventStore, topic: &TopicName) {
    let mut best = f64::MAX;
    let mut total = 0.0;
    for _ in 0..ROUNDS {
        let events: Vec<Append> = (0..BATCH)
            .map(|i| Append {
                topic: topic.clone(),
                routing_key: key(i),
                payload: RawValue::from_string(json!({"v": i, "unit": "C"}).to_string()).unwrap(),
                id: uuid::Uuid::new_v4().to_string(),
                client_id: false,
                posted_by: Some("bench".into()),
            })
            .collect();
        let started = Instant::now();
        store.append(events, Utc::now()).await.unwrap();
        let took = started.elapsed().as_secs_f64();
        best = best.min(took);
        total += took;
    }
    println!(
        "store append, {BATCH} events per call: best {:.1} ms ({:.0} events/s), mean {:.1} ms",
        best * 1e3,
        BATCH as f64 / best,
        total / ROUNDS as f64 * 1e3
    );
}

async fn hub_rate(hub: &EventHub, topic: &TopicName) {
    let actor = Actor::user("bench", AccessLevel::SysAdmin);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let (hub, topic, actor) = (hub.clone(), topic.clone(), actor.clone());
        tasks.push(tokio::spawn(async move {
            for call in 0..PUBLISH_CALLS {
                let events = (0..PUBLISH_BATCH)
                    .map(|i| NewEvent {
                        topic: topic.clone(),
                        routing_key: key(i),
                        payload: json!({"p": p, "call": call, "v": i, "unit": "C"}),
                        id: None,
                    })
                    .collect();
                if let Err(e) = hub.publish(events, &actor).await {
                    panic!("publish failed: {e}");
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    let n = PUBLISHERS * PUBLISH_CALLS * PUBLISH_BATCH;
    println!(
        "hub publish, {PUBLISHERS} publishers x {PUBLISH_CALLS} calls x {PUBLISH_BATCH} events: \
         {:.2} s ({:.0} events/s, {} commits)",
        took,
        n as f64 / took,
        hub.counters()
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let spec = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("hub.db").display()));
    let store = open_event_store(&spec).await.unwrap();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let direct = TopicName::new(&format!("bench-{suffix}")).unwrap();
    store
        .create_topic(&direct, &TopicSpec::default(), false, "bench")
        .await
        .unwrap();
    store_rate(&*store, &direct).await;

    let hub = EventHub::start(
        store.clone(),
        Arc::new(InProcessBroker),
        HubConfig::default(),
    )
    .await
    .unwrap();
    let published = TopicName::new(&format!("bench-hub-{suffix}")).unwrap();
    hub.create_topic(
        &published,
        &TopicSpec::default(),
        &Actor::user("bench", AccessLevel::SysAdmin),
    )
    .await
    .unwrap();
    hub_rate(&hub, &published).await;
    hub.close();
}
