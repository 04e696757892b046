//! The RabbitMQ broker against a real RabbitMQ server (`SLUICE_TEST_AMQP`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`); an unreachable server fails the tests. Each test runs
//! brokers ("nodes") on an exchange of its own and deletes it at the end. The tests run one at a
//! time: one of them restarts the RabbitMQ application (`rabbitmqctl stop_app` / `start_app`).

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use sluice_events::broker::amqp::{DEFAULT_URL, amqp_binding_key};
use sluice_events::{AmqpBroker, Broker, ErrorKind, Pattern, StoredEvent};
use support::{QUIET, assert_same, chain, event, event_with_key, expect_quiet, receive, topic};

/// One test at a time (the restart test takes RabbitMQ away from everyone).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn url() -> String {
    std::env::var("SLUICE_TEST_AMQP").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

fn exchange(label: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("sluice.test.{label}.{}", &suffix[..12])
}

async fn connect(exchange: &str) -> Arc<AmqpBroker> {
    let url = url();
    match AmqpBroker::connect(&url, exchange).await {
        Ok(broker) => Arc::new(broker),
        Err(e) => panic!(
            "RabbitMQ is needed at {} (set SLUICE_TEST_AMQP; these tests never skip): {}",
            url.split('@').next_back().unwrap_or_default(),
            chain(&e)
        ),
    }
}

/// Two nodes on a fresh exchange; runs `test`, then deletes the exchange whether `test`
/// passed or not.
async fn with_two_nodes<F, Fut>(label: &str, test: F)
where
    F: FnOnce(Arc<AmqpBroker>, Arc<AmqpBroker>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let _turn = SERIAL.lock().await;
    let exchange = exchange(label);
    let a = connect(&exchange).await;
    let b = connect(&exchange).await;
    let outcome = tokio::spawn(test(a.clone(), b.clone())).await;
    a.delete_exchange()
        .await
        .expect("deleting the test exchange");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn events_reach_the_other_node_in_order_exactly_once() {
    with_two_nodes("order", |a, b| async move {
        assert_eq!(a.name(), "amqp");
        assert!(a.is_remote());
        assert_ne!(a.node_id(), b.node_id());
        let target = a.target().expect("an AMQP broker names its target");
        assert!(target.contains(":***@"), "{target}");
        assert!(!target.contains("guest:guest"), "{target}");
        let mut at_a = a.remote_events().await.expect("node a's receiver");
        let mut at_b = b.remote_events().await.expect("node b's receiver");

        // Topics and keys a careless routing-key encoding would merge: topic plant.a with key
        // b.c versus topic plant with key a.b.c.
        let payloads = [
            r#"{"n":1,"text":"grüße, 世界 \"quoted\""}"#,
            r#"[1,2.5,null,true]"#,
            r#""just a string""#,
            r#"{"nested":{"deep":[{"x":1e-7}]}}"#,
        ];
        let mut sent = Vec::new();
        for seq in 1..=20u64 {
            let payload = payloads[seq as usize % payloads.len()];
            sent.push(event_with_key("plant.a", seq, "b.c", payload));
            sent.push(event_with_key("plant", seq, "a.b.c", payload));
            sent.push(event("orders_eu", seq, payload));
        }
        // The longest routing key after a long topic name: its AMQP key is cut, the event
        // arrives whole.
        let long_key = vec!["w0123456789"; 21].join(".");
        sent.push(event_with_key(&"t".repeat(100), 1, &long_key, "{}"));
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
        expect_quiet(&mut at_b, "node b (after all of a's events)").await;

        // Node a hears node b, and nothing of its own before that.
        let marker = event("plant", 21, r#"{"from":"b"}"#);
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

/// A consumer of its own, bound with `amqp_binding_key(topic, pattern)`, receives exactly the
/// events sluice's own matching gives a subscriber with that pattern.
#[tokio::test]
async fn rabbitmq_routes_by_sluice_patterns() {
    with_two_nodes("routing", |a, _b| async move {
        let connection = Connection::connect(&url(), ConnectionProperties::default())
            .await
            .expect("a plain RabbitMQ connection");
        let channel = connection.create_channel().await.expect("a channel");
        let keys = [
            "a", "a.b", "a.b.c", "a.c", "b.c", "a.x.y.c", "a:b.c", "a-b.c", "x@y.a.c", "c",
        ];
        let patterns = [
            "a", "a.*", "a.#", "#.c", "*.c", "*.*", "a.#.c", "a.*.c", "#", "*", "a:b.#", "#.a.#",
        ];
        let mut queues = Vec::new();
        for (i, text) in patterns.iter().enumerate() {
            let pattern = Pattern::new(text).expect("a valid pattern");
            let queue = channel
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("a queue");
            channel
                .queue_bind(
                    queue.name().clone(),
                    a.exchange().into(),
                    amqp_binding_key(&topic("plant"), &pattern).as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("a binding");
            let consumer = channel
                .basic_consume(
                    queue.name().clone(),
                    format!("test-{i}").as_str().into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("a consumer");
            queues.push((pattern, consumer));
        }
        // Each key on topic `plant` and, as a decoy, on topic `plant.a` (whose AMQP keys a
        // dot-joined encoding would confuse with `plant`'s keys starting with `a`).
        let mut sent = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            sent.push(event_with_key("plant", i as u64 + 1, key, "{}"));
            sent.push(event_with_key("plant.a", i as u64 + 1, key, "{}"));
        }
        a.announce(&sent).await.expect("announcing");

        for (pattern, mut consumer) in queues {
            let mut got = Vec::new();
            while let Ok(Some(delivery)) = tokio::time::timeout(QUIET, consumer.next()).await {
                let delivery = delivery.expect("a delivery");
                let event: StoredEvent =
                    serde_json::from_slice(&delivery.data).expect("a stored event");
                got.push((event.topic.to_string(), event.routing_key.to_string()));
            }
            let expected: Vec<(String, String)> = keys
                .iter()
                .filter(|k| pattern.matches_str(k))
                .map(|k| ("plant".to_owned(), (*k).to_owned()))
                .collect();
            assert_eq!(got, expected, "pattern {pattern}");
        }
        let _ = connection.close(200, "done".into()).await;
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

fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (the restart test needs it on the RabbitMQ host)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A RabbitMQ restart loses neither node: announcing works again once RabbitMQ is back, and
/// the receiver declares a new queue and hears the other node again.
#[tokio::test]
async fn both_nodes_carry_on_after_a_rabbitmq_restart() {
    with_two_nodes("restart", |a, b| async move {
        let mut at_b = b.remote_events().await.expect("node b's receiver");
        a.announce(&[event("plant", 1, "{}")])
            .await
            .expect("announcing before the restart");
        assert_eq!(receive(&mut at_b, 1).await[0].seq, 1);

        rabbitmqctl(&["stop_app"]);
        let during = a.announce(&[event("plant", 2, "{}")]).await;
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup"]);
        assert!(during.is_err(), "announcing without RabbitMQ must fail");

        // The receiver reconnects on its own (pauses up to 5 s); announce until it hears.
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut seq = 3;
        let heard = loop {
            assert!(
                Instant::now() < deadline,
                "node b heard nothing within 40 s of the restart"
            );
            if let Err(e) = a.announce(&[event("plant", seq, "{}")]).await {
                eprintln!("announce {seq} after the restart failed: {e}");
            }
            if let Ok(Some(batch)) =
                tokio::time::timeout(Duration::from_millis(500), at_b.next()).await
            {
                break batch;
            }
            seq += 1;
        };
        assert!(heard.iter().all(|e| e.seq >= 3), "{heard:?}");
        // Once back, every announcement arrives.
        a.announce(&[event("plant", 1000, "{}")])
            .await
            .expect("announcing after the restart");
        let mut rest = receive(&mut at_b, 1).await;
        while rest.last().map(|e| e.seq) != Some(1000) {
            rest.extend(receive(&mut at_b, 1).await);
        }
    })
    .await;
}

#[tokio::test]
async fn an_exchange_of_another_kind_is_refused() {
    let _turn = SERIAL.lock().await;
    let name = exchange("clash");
    let connection = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ is needed (set SLUICE_TEST_AMQP)");
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .exchange_declare(
            name.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("a fanout exchange");
    let refused = AmqpBroker::connect(&url(), &name).await;
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("deleting the test exchange");
    let e = refused.expect_err("a fanout exchange of that name");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{}", chain(&e));
}

#[tokio::test]
async fn a_wrong_password_fails_without_showing_it() {
    let _turn = SERIAL.lock().await;
    let e = AmqpBroker::connect(
        "amqp://guest:not-the-Password-42@127.0.0.1:5672/%2f",
        "sluice.test.login",
    )
    .await
    .expect_err("a wrong password");
    let text = chain(&e);
    assert!(!text.contains("not-the-Password-42"), "{text}");
    let e = AmqpBroker::connect("amqp//guest:not-the-Password-42@x", "sluice.test.login")
        .await
        .expect_err("not a URL");
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(!chain(&e).contains("not-the-Password-42"));
}
