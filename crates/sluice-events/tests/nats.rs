//! The NATS JetStream broker against a real NATS server (`SLUICE_TEST_NATS`, default
//! `nats://127.0.0.1:4222`); an unreachable server fails the tests. Each test runs two brokers
//! ("nodes") on a stream and subject prefix of its own and deletes the stream at the end.

mod support;

use std::future::Future;
use std::sync::Arc;

use sluice_events::broker::nats::DEFAULT_URL;
use sluice_events::{Broker, NatsBroker, NatsOptions};
use support::{assert_same, chain, event, expect_quiet, receive};

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
        support::a_batch_of_5000_arrives_complete_and_in_order(&*a, &*b).await;
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
