#![allow(clippy::unwrap_used)]
//! The conformance kit against the real MariaDB test server, a fresh database for each check.

mod support;

use sluice_connector::kit;

macro_rules! conformance {
    ($($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                support::with_database(|connector, _| async move {
                    kit::$check(&connector).await;
                })
                .await;
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
                support::with_database(|connector, _| async move {
                    kit::integrate::$check(&connector).await;
                })
                .await;
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
    support::with_database(|connector, _| async move {
        kit::checksum::checksums_find_differences(&connector).await;
    })
    .await;
}
