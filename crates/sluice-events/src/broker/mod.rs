//! Live delivery between hub nodes.
//!
//! Every node stores events in the shared repository first; a [`Broker`] only tells the other
//! nodes "these events are stored" so their subscribers see them at once. Subscribers treat the
//! broker as a hint: a gap in sequence numbers is filled from the store, a duplicate is skipped,
//! and with a remote broker they also look at the store when idle, so a lost announcement delays
//! an event but never loses it.
//!
//! * [`InProcessBroker`]: one hub process (the default).
//! * [`NatsBroker`]: several hub nodes over a NATS JetStream stream.
//! * [`AmqpBroker`]: several hub nodes over a RabbitMQ topic exchange.

pub mod amqp;
pub mod nats;

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::event::StoredEvent;

pub use amqp::AmqpBroker;
pub use nats::{NatsBroker, NatsOptions, NatsStorage};

/// Events announced by other nodes, as they arrive.
pub type RemoteEvents = BoxStream<'static, Vec<StoredEvent>>;

/// Carries stored events to the other hub nodes.
#[async_trait]
pub trait Broker: Send + Sync {
    /// A short name for logs and `/health` (`in-process`, `nats`, `amqp`).
    fn name(&self) -> &'static str;

    /// Where the broker connects, fit for logs: never a password.
    fn target(&self) -> Option<String> {
        None
    }

    /// Whether other nodes may store events on the same topics (subscribers then also look at
    /// the store when idle).
    fn is_remote(&self) -> bool;

    /// Announces events this node has just stored, in sequence order per topic.
    async fn announce(&self, events: &[Arc<StoredEvent>]) -> Result<()>;

    /// The events other nodes announce from now on (never this node's own). Called once, when
    /// the hub starts.
    async fn remote_events(&self) -> Result<RemoteEvents>;
}

/// The default: one hub process, nothing to tell anyone.
#[derive(Debug, Default, Clone, Copy)]
pub struct InProcessBroker;

#[async_trait]
impl Broker for InProcessBroker {
    fn name(&self) -> &'static str {
        "in-process"
    }

    fn is_remote(&self) -> bool {
        false
    }

    async fn announce(&self, _events: &[Arc<StoredEvent>]) -> Result<()> {
        Ok(())
    }

    async fn remote_events(&self) -> Result<RemoteEvents> {
        Ok(Box::pin(futures::stream::pending()))
    }
}
