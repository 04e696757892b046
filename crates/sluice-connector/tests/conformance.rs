//! The conformance kit run against the in-memory connector (which cannot evaluate SQL filters).

#![allow(clippy::unwrap_used)]

use sluice_connector::kit::{self, memory::MemoryConnector};

#[tokio::test]
async fn round_trip_every_type() {
    kit::round_trip_every_type(&MemoryConnector::new()).await;
}

#[tokio::test]
async fn quoted_identifiers() {
    kit::quoted_identifiers(&MemoryConnector::new()).await;
}

#[tokio::test]
async fn empty_table() {
    kit::empty_table(&MemoryConnector::new()).await;
}

#[tokio::test]
async fn batch_boundary_at_100k() {
    kit::batch_boundary_at_100k(&MemoryConnector::new()).await;
}

#[tokio::test]
async fn idempotent_rerun() {
    kit::idempotent_rerun(&MemoryConnector::new()).await;
}

#[tokio::test]
async fn rollback_leaves_target_unchanged() {
    kit::rollback_leaves_target_unchanged(&MemoryConnector::new()).await;
}

#[tokio::test]
async fn ordered_reads() {
    kit::ordered_reads(&MemoryConnector::new()).await;
}

#[tokio::test]
async fn missing_table() {
    kit::missing_table(&MemoryConnector::new()).await;
}

#[tokio::test]
async fn target_mismatch_changes_nothing() {
    kit::target_mismatch_changes_nothing(&MemoryConnector::new()).await;
}

#[tokio::test]
async fn upsert_and_delete() {
    kit::upsert_and_delete(&MemoryConnector::new()).await;
}
