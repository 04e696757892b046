#![allow(clippy::unwrap_used)]
//! The conformance kit against the real PostgreSQL test server, a fresh schema for each check.

mod common;

use sluice_connector::kit;

macro_rules! conformance {
    ($($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fresh = common::fresh().await;
                kit::$check(&fresh.connector).await;
            }
        )+
    };
}

conformance!(
    round_trip_every_type,
    quoted_identifiers,
    empty_table,
    batch_boundary_at_100k,
    idempotent_rerun,
    rollback_leaves_target_unchanged,
    ordered_reads,
    filters,
    missing_table,
    target_mismatch_changes_nothing,
    upsert_and_delete,
    incremental_reads,
);

macro_rules! integrate {
    ($($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fresh = common::fresh().await;
                kit::integrate::$check(&fresh.connector).await;
            }
        )+
    };
}

integrate!(
    integrate_changes,
    integrate_failed_batch_changes_nothing,
    integrate_target_mismatch,
    integrate_add_column,
    integrate_drop,
    integrate_large_batch,
    integrate_concurrent_open,
    integrate_abandoned_apply,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_find_differences() {
    let fresh = common::fresh().await;
    kit::checksum::checksums_find_differences(&fresh.connector).await;
}
