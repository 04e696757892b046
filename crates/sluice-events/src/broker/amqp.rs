//! The RabbitMQ (AMQP 0-9-1) broker: hub nodes announce the events they store on one topic
//! exchange and read each other's announcements through a queue of their own.
//!
//! * The exchange is a durable `topic` exchange (default `sluice.events`; `sluice serve` names it
//!   after the repository's cluster id, so hubs sharing a RabbitMQ server stay apart).
//! * Each message is one [`StoredEvent`] as compact JSON (`application/json`, transient), with
//!   the `app_id` property naming the node that stored it, so a node skips its own.
//! * The AMQP routing key is `<topic token>.<routing key>` ([`amqp_routing_key`]): the topic
//!   token is the topic name with its `.` written as `:` (a topic name never holds `:`, and a
//!   token never holds `.`, so the first word is always the whole topic). sluice's pattern
//!   language has AMQP's semantics (`*` one word, `#` zero or more), so a consumer of its own
//!   binds `<topic token>.<pattern>` ([`amqp_binding_key`]) and sees what a sluice subscriber
//!   with that pattern sees. AMQP routing keys hold at most 255 bytes: a longer one is cut at
//!   its last whole word that fits (the message still carries the full key); sluice nodes bind
//!   `#` and match the full key themselves, so the cut never changes what they deliver.
//! * Each node reads through an exclusive, auto-deleted, server-named queue bound with `#`
//!   (without acks; at most [`QUEUE_LIMIT`] waiting messages, the oldest dropped first).
//!
//! Announcements are hints: the repository is the store of record. When RabbitMQ goes away
//! (a restart, a network break), an announce call fails and the hub logs it; the next call
//! connects again. The receiver notices the closed connection, and reconnects with a pause
//! doubling from 100 ms to 5 s, without end, declaring the exchange, a new queue and its
//! binding again. Events announced while a node had no queue never reach it over AMQP; its
//! subscribers find them in the store when idle, so they arrive late but are never lost.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

use super::{Broker, RemoteEvents};
use crate::error::{Error, Result};
use crate::event::StoredEvent;
use crate::routing::{Pattern, RoutingKey};
use crate::topic::TopicName;

/// Where RabbitMQ listens when nothing else is said (user and password `guest`).
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The exchange's name when nothing else is said.
pub const DEFAULT_EXCHANGE: &str = "sluice.events";
/// Messages a node's queue holds at most; beyond, RabbitMQ drops the oldest.
pub const QUEUE_LIMIT: i64 = 100_000;
/// The longest AMQP routing key, in bytes.
const MAX_AMQP_KEY: usize = 255;

/// Publishes awaiting their confirms at most, per announce call.
const CONFIRM_WINDOW: usize = 2048;
/// Most events in one batch of remote events.
const REMOTE_BATCH: usize = 1024;
/// The longest an announcement may wait for RabbitMQ (publishes and their confirms). With the
/// RabbitMQ application stopped and its node up, the connection stays open and confirms never
/// come: without a bound the announcer waited for ever.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest closing a failed connection may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pauses of the receiver after an error, doubling from the first to the second.
const RETRY_PAUSE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// The topic's first word of AMQP routing keys: its name with `.` written as `:`.
pub fn topic_token(topic: &TopicName) -> String {
    topic.as_str().replace('.', ":")
}

/// The AMQP routing key of an event: `<topic token>.<routing key>`, cut at the last whole word
/// that fits in 255 bytes.
pub fn amqp_routing_key(topic: &TopicName, key: &RoutingKey) -> String {
    let mut out = topic_token(topic);
    for word in key.words() {
        if out.len() + 1 + word.len() > MAX_AMQP_KEY {
            break;
        }
        out.push('.');
        out.push_str(word);
    }
    out
}

/// The AMQP binding key under which a queue of its own receives the events of `topic` whose
/// routing key matches `pattern` (for routing keys of at most 255 bytes with the topic token).
pub fn amqp_binding_key(topic: &TopicName, pattern: &Pattern) -> String {
    format!("{}.{}", topic_token(topic), pattern.as_str())
}

/// `url` without its password, for logs and messages.
fn redacted(uri: &AMQPUri) -> String {
    let scheme = match uri.scheme {
        lapin::uri::AMQPScheme::AMQP => "amqp",
        lapin::uri::AMQPScheme::AMQPS => "amqps",
    };
    let auth = &uri.authority;
    let vhost: String = uri
        .vhost
        .bytes()
        .map(|b| match b {
            b'/' => "%2f".to_owned(),
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') => {
                char::from(b).to_string()
            }
            b => format!("%{b:02x}"),
        })
        .collect();
    format!(
        "{scheme}://{}:***@{}:{}/{vhost}",
        auth.userinfo.username, auth.host, auth.port
    )
}

/// Parses an AMQP URL without echoing it (it holds a password) in the error.
fn parse_url(url: &str) -> Result<AMQPUri> {
    url.parse::<AMQPUri>().map_err(|_| {
        Error::invalid(
            "not an AMQP URL: expected amqp://USER:PASSWORD@HOST:PORT/VHOST (or amqps://; the vhost `/` is written %2f)",
        )
    })
}

fn amqp(what: &'static str) -> impl FnOnce(lapin::Error) -> Error {
    move |e| Error::storage(what, e)
}

fn short(text: &str) -> Result<ShortString> {
    ShortString::try_new(text).map_err(|e| Error::invalid(format!("{text:?}: {e}")))
}

/// An open connection and its channel.
struct Link {
    connection: Connection,
    channel: Channel,
}

impl Link {
    async fn open(uri: &AMQPUri, name: &str, exchange: &str) -> Result<Link> {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connection = Connection::connect_uri(uri.clone(), properties)
            .await
            .map_err(amqp("connecting to RabbitMQ"))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(amqp("opening a RabbitMQ channel"))?;
        declare_exchange(&channel, exchange).await?;
        Ok(Link {
            connection,
            channel,
        })
    }

    fn is_open(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    async fn close(&self) {
        let _ = self
            .connection
            .close(200, "sluice hub closing".into())
            .await;
    }
}

/// Declares the durable topic exchange; an exchange of that name of another kind is a
/// conflict.
async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<()> {
    let declared = channel
        .exchange_declare(
            short(exchange)?,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match declared {
        Ok(()) => Ok(()),
        Err(e) if is_precondition_failed(&e) => Err(Error::conflict(format!(
            "RabbitMQ exchange {exchange} exists but is not a durable topic exchange"
        ))),
        Err(e) => Err(Error::storage("declaring the RabbitMQ exchange", e)),
    }
}

fn is_precondition_failed(e: &lapin::Error) -> bool {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => p.get_id() == 406,
        _ => false,
    }
}

/// Announces stored events on a RabbitMQ topic exchange and reads the other nodes'
/// announcements.
pub struct AmqpBroker {
    uri: AMQPUri,
    target: String,
    exchange: String,
    node_id: String,
    /// The publishing link (made again after a failure); one announce call at a time, which
    /// keeps calls in order.
    publishing: tokio::sync::Mutex<Option<Link>>,
}

impl fmt::Debug for AmqpBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpBroker")
            .field("target", &self.target)
            .field("exchange", &self.exchange)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl AmqpBroker {
    /// Connects to RabbitMQ at `url` (e.g. [`DEFAULT_URL`]) and declares the durable topic
    /// `exchange` (letters, digits, `_`, `-`, `.` and `:`). Fails when the URL is not an AMQP
    /// URL, RabbitMQ is unreachable or refuses the login, or an exchange of that name is not a
    /// topic exchange. The broker gets a random node id.
    pub async fn connect(url: &str, exchange: &str) -> Result<AmqpBroker> {
        check_exchange(exchange)?;
        let uri = parse_url(url)?;
        let node_id = uuid::Uuid::new_v4().simple().to_string();
        let link = Link::open(&uri, &format!("sluice-hub-{node_id}"), exchange).await?;
        link.channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp("turning on RabbitMQ publisher confirms"))?;
        Ok(AmqpBroker {
            target: redacted(&uri),
            uri,
            exchange: exchange.to_owned(),
            node_id,
            publishing: tokio::sync::Mutex::new(Some(link)),
        })
    }

    /// This node's id, sent as the `app_id` of its announcements.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The exchange in use.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// Deletes the exchange: for tests and benchmarks cleaning up after themselves.
    pub async fn delete_exchange(&self) -> Result<()> {
        let link = Link::open(
            &self.uri,
            &format!("sluice-hub-{}-cleanup", self.node_id),
            &self.exchange,
        )
        .await?;
        let deleted = link
            .channel
            .exchange_delete(short(&self.exchange)?, ExchangeDeleteOptions::default())
            .await
            .map_err(amqp("deleting the RabbitMQ exchange"));
        link.close().await;
        deleted
    }

    /// The publishing link, connecting again when it is gone.
    async fn publisher<'a>(&self, slot: &'a mut Option<Link>) -> Result<&'a Link> {
        if !slot.as_ref().is_some_and(Link::is_open) {
            if let Some(old) = slot.take() {
                old.close().await;
            }
            let link = Link::open(
                &self.uri,
                &format!("sluice-hub-{}", self.node_id),
                &self.exchange,
            )
            .await?;
            link.channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(amqp("turning on RabbitMQ publisher confirms"))?;
            tracing::info!(broker = %self.target, "connected to RabbitMQ again");
            *slot = Some(link);
        }
        Ok(slot.as_ref().expect("a link was made just above"))
    }

    async fn publish_all(&self, link: &Link, events: &[Arc<StoredEvent>]) -> Result<()> {
        let exchange = short(&self.exchange)?;
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(1)
            .with_app_id(short(&self.node_id)?);
        let mut confirms = FuturesUnordered::new();
        let mut failure = None;
        for event in events {
            if confirms.len() >= CONFIRM_WINDOW
                && let Some(Err(e)) = confirms.next().await
            {
                failure.get_or_insert(e);
            }
            let key = short(&amqp_routing_key(&event.topic, &event.routing_key))?;
            let confirm = link
                .channel
                .basic_publish(
                    exchange.clone(),
                    key,
                    BasicPublishOptions::default(),
                    event.to_json().as_bytes(),
                    properties.clone(),
                )
                .await
                .map_err(amqp("publishing events to RabbitMQ"))?;
            confirms.push(async move {
                match confirm.await {
                    Ok(c) if c.is_nack() => Err(Error::storage(
                        "RabbitMQ refused a published event",
                        std::io::Error::other("negative publisher confirm"),
                    )),
                    Ok(_) => Ok(()),
                    Err(e) => Err(Error::storage("awaiting RabbitMQ publisher confirms", e)),
                }
            });
        }
        while let Some(confirm) = confirms.next().await {
            if let Err(e) = confirm {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

fn check_exchange(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_AMQP_KEY
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        || name.starts_with("amq.")
    {
        return Err(Error::invalid(format!(
            "RabbitMQ exchange name {name:?} must be letters, digits, '_', '-', '.' and ':', and not start with amq."
        )));
    }
    Ok(())
}

#[async_trait]
impl Broker for AmqpBroker {
    fn name(&self) -> &'static str {
        "amqp"
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn target(&self) -> Option<String> {
        Some(self.target.clone())
    }

    /// Publishes each event with its AMQP routing key, in order, without waiting for one
    /// confirm before sending the next (a bounded window in flight), then awaits the rest, for at
    /// most [`ANNOUNCE_TIMEOUT`]. A failure drops the connection; the next call connects again.
    async fn announce(&self, events: &[Arc<StoredEvent>]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut slot = self.publishing.lock().await;
        let link = self.publisher(&mut slot).await?;
        let outcome = tokio::time::timeout(ANNOUNCE_TIMEOUT, self.publish_all(link, events))
            .await
            .unwrap_or_else(|_| {
                Err(Error::storage(
                    "announcing events to RabbitMQ",
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no publisher confirms within {ANNOUNCE_TIMEOUT:?}"),
                    ),
                ))
            });
        if outcome.is_err()
            && let Some(link) = slot.take()
        {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, link.close()).await;
        }
        outcome
    }

    /// Reads this node's own queue, in batches of whatever has arrived, skipping this node's
    /// own announcements and messages that are not stored events; reconnects without end.
    async fn remote_events(&self) -> Result<RemoteEvents> {
        let mut receiver = Receiver {
            uri: self.uri.clone(),
            target: self.target.clone(),
            exchange: self.exchange.clone(),
            node_id: self.node_id.clone(),
            link: None,
            consumer: None,
        };
        receiver.open().await?;
        let events = futures::stream::unfold(receiver, |mut receiver| async move {
            let event = receiver.next_event().await;
            Some((event, receiver))
        });
        Ok(events.ready_chunks(REMOTE_BATCH).boxed())
    }
}

/// One node's reading of its queue.
struct Receiver {
    uri: AMQPUri,
    target: String,
    exchange: String,
    node_id: String,
    link: Option<Link>,
    consumer: Option<Consumer>,
}

impl Receiver {
    /// Connects, declares a fresh queue bound to every routing key, and consumes it.
    async fn open(&mut self) -> Result<()> {
        self.consumer = None;
        if let Some(old) = self.link.take() {
            old.close().await;
        }
        let link = Link::open(
            &self.uri,
            &format!("sluice-hub-{}-receiver", self.node_id),
            &self.exchange,
        )
        .await?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(QUEUE_LIMIT));
        arguments.insert(
            "x-overflow".into(),
            AMQPValue::LongString("drop-head".into()),
        );
        let queue = link
            .channel
            .queue_declare(
                ShortString::from(""),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await
            .map_err(amqp("declaring a RabbitMQ queue"))?;
        link.channel
            .queue_bind(
                queue.name().clone(),
                short(&self.exchange)?,
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp("binding a RabbitMQ queue"))?;
        let consumer = link
            .channel
            .basic_consume(
                queue.name().clone(),
                short(&format!("sluice-{}", self.node_id))?,
                BasicConsumeOptions {
                    no_ack: true,
                    exclusive: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp("consuming a RabbitMQ queue"))?;
        self.link = Some(link);
        self.consumer = Some(consumer);
        Ok(())
    }

    /// The next event another node announced; waits (and reconnects) until there is one.
    async fn next_event(&mut self) -> StoredEvent {
        let mut pause = RETRY_PAUSE.0;
        loop {
            let Some(consumer) = self.consumer.as_mut() else {
                match self.open().await {
                    Ok(()) => {
                        tracing::info!(broker = %self.target, exchange = %self.exchange, "reading announcements from RabbitMQ again");
                        pause = RETRY_PAUSE.0;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, broker = %self.target, "cannot read announcements from RabbitMQ; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(RETRY_PAUSE.1);
                    }
                }
                continue;
            };
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    if let Some(event) = self.decode(&delivery) {
                        return event;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, broker = %self.target, "reading announcements from RabbitMQ failed; reconnecting");
                    self.consumer = None;
                    tokio::time::sleep(pause).await;
                }
                None => {
                    tracing::warn!(broker = %self.target, "the RabbitMQ consumer ended; reconnecting");
                    self.consumer = None;
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// The event in `delivery`, unless it is this node's own or not an event.
    fn decode(&self, delivery: &lapin::message::Delivery) -> Option<StoredEvent> {
        if delivery
            .properties
            .app_id()
            .as_ref()
            .is_some_and(|node| node.as_str() == self.node_id)
        {
            return None;
        }
        match serde_json::from_slice(&delivery.data) {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::warn!(error = %e, routing_key = %delivery.routing_key, "skipping a RabbitMQ message that is not a stored event");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic(name: &str) -> TopicName {
        TopicName::new(name).expect("a valid topic name")
    }

    fn key(text: &str) -> RoutingKey {
        RoutingKey::new(text).expect("a valid routing key")
    }

    #[test]
    fn topic_tokens_keep_topics_apart_and_hold_no_dot() {
        assert_eq!(topic_token(&topic("plant.a")), "plant:a");
        assert_eq!(
            amqp_routing_key(&topic("plant.a"), &key("b")),
            "plant:a.b",
            "topic plant.a, key b"
        );
        assert_eq!(
            amqp_routing_key(&topic("plant"), &key("a.b")),
            "plant.a.b",
            "topic plant, key a.b"
        );
        let p = Pattern::new("line1.#").expect("a valid pattern");
        assert_eq!(amqp_binding_key(&topic("plant.a"), &p), "plant:a.line1.#");
    }

    #[test]
    fn long_keys_are_cut_at_a_whole_word() {
        let t = topic(&"t".repeat(100));
        let words: Vec<String> = (0..25).map(|i| format!("word{i:05}")).collect();
        let k = key(&words.join("."));
        assert!(k.as_str().len() <= 255);
        let amqp_key = amqp_routing_key(&t, &k);
        assert!(amqp_key.len() <= MAX_AMQP_KEY, "{}", amqp_key.len());
        assert!(amqp_key.len() > MAX_AMQP_KEY - 10);
        let kept: Vec<&str> = amqp_key.split('.').skip(1).collect();
        assert_eq!(kept, words[..kept.len()].to_vec());
    }

    #[test]
    fn urls_lose_their_password() {
        let uri = parse_url("amqp://sluice:s3cr%40t@rabbit.example:5673/prod").expect("a URL");
        let shown = redacted(&uri);
        assert_eq!(shown, "amqp://sluice:***@rabbit.example:5673/prod");
        assert!(!shown.contains("s3cr"));
        let uri = parse_url(DEFAULT_URL).expect("the default URL");
        assert_eq!(redacted(&uri), "amqp://guest:***@127.0.0.1:5672/%2f");
        let e = parse_url("http://user:hunter2@host/").expect_err("not AMQP");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn exchange_names_are_checked() {
        assert!(check_exchange(DEFAULT_EXCHANGE).is_ok());
        assert!(check_exchange("sluice.events.1f0c9a2b7d4e").is_ok());
        for bad in ["", "amq.topic", "a b", "a/b", &"x".repeat(256)] {
            assert!(check_exchange(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// The AMQP key of a key that fits keeps every word, and its words after the topic
        /// are the key's.
        #[test]
        fn keys_that_fit_keep_their_words(words in proptest::collection::vec("[a-z0-9_:@-]{1,8}", 1..8)) {
            let k = key(&words.join("."));
            let t = topic("orders.eu");
            let amqp_key = amqp_routing_key(&t, &k);
            prop_assert_eq!(amqp_key, format!("orders:eu.{}", k.as_str()));
        }
    }
}
