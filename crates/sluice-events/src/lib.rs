//! The event hub of sluice: topics with JSON Schema, routing keys with `*`/`#` wildcards,
//! events persisted in the hub repository before publish is acknowledged, live subscriptions
//! that resume without gap or duplicate, history queries, retention, and broker transports for
//! several hub nodes.
//!
//! * [`routing`]: routing keys and the one pattern language of streams and history.
//! * [`topic`]: topic names, specs, grants, retention, schema versions.
//! * [`event`]: events as published, stored and delivered.
//! * [`store`]: the persistence contract ([`EventStore`]) and its SQLite and PostgreSQL stores.
//! * [`broker`]: live delivery between nodes ([`Broker`]): in-process (default), NATS JetStream or RabbitMQ.
//! * [`hub`]: [`EventHub`], publish with group commit and backpressure, subscriptions.
#![deny(missing_docs)]

pub mod broker;
pub mod error;
pub mod event;
pub mod hub;
pub mod routing;
pub mod store;
pub mod topic;

pub use broker::{AmqpBroker, Broker, InProcessBroker, NatsBroker, NatsOptions, NatsStorage};
pub use error::{Error, ErrorKind, Result};
pub use event::{NewEvent, Published, StoredEvent};
pub use hub::{Actor, Delivery, EventHub, HubConfig, Subscription};
pub use routing::{Pattern, RoutingKey};
pub use store::{EventStore, HistoryPage, HistoryQuery};
pub use topic::{Grants, Principal, Retention, Topic, TopicName, TopicSpec};
