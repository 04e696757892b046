//! Helpers the replication tests share: shell clients of the test servers and waits on the
//! service's events, jobs and compares.

#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use sluice_model::{ChannelName, EventId, EventState, HubName, JobName, JobState};
use sluice_service::{CompareCommand, EventFilter, Granularity, HubService};

pub fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed (is the server up? run scripts/services): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn psql(db: &str, sql: &str) -> String {
    run(
        Command::new("psql").args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAtc",
            sql,
        ]),
        &format!("psql {sql}"),
    )
}

pub fn mariadb(sql: &str) {
    run(
        Command::new("mariadb").args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e", sql]),
        &format!("mariadb {sql}"),
    );
}

pub async fn wait_event(svc: &HubService, hub: &HubName, id: EventId) -> EventState {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let events = svc
            .events(&EventFilter {
                hub: Some(hub.clone()),
                ids: vec![id],
                ..Default::default()
            })
            .await
            .unwrap();
        let e = &events[0];
        if e.state != EventState::Active {
            if e.state == EventState::Failed {
                // The event's results say why; a failing assertion on the state alone would not.
                eprintln!("event {id} FAILED: {e:?}");
            }
            return e.state;
        }
        assert!(
            Instant::now() < deadline,
            "event {id} still ACTIVE after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn job_state(svc: &HubService, hub: &HubName, job: &str) -> Option<JobState> {
    let job: JobName = job.parse().unwrap();
    svc.jobs(hub)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.name == job)
        .map(|j| j.state)
}

pub async fn wait_job(svc: &HubService, hub: &HubName, job: &str, state: JobState) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while job_state(svc, hub, job).await != Some(state) {
        assert!(
            Instant::now() < deadline,
            "job {job} is {:?}, not {state:?}, after 60 s",
            job_state(svc, hub, job).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Compares row by row until identical (changes may be in flight), at most 90 s.
pub async fn wait_identical(svc: &HubService, hub: &HubName, what: &str) {
    wait_identical_at(svc, hub, None, what).await
}

/// [`wait_identical`] against one of several targets.
pub async fn wait_identical_at(svc: &HubService, hub: &HubName, target: Option<&str>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let running = svc
            .compare(CompareCommand {
                slicing: Default::default(),
                hub: hub.clone(),
                channel: ChannelName::new("c").unwrap(),
                source: None,
                target: target.map(|t| t.parse().unwrap()),
                tables: vec![],
                granularity: Granularity::Rowwise,
                max_listed: 5,
                pushdown: true,
                online: None,
            })
            .await
            .unwrap();
        let summary = running.done.await.unwrap().unwrap();
        if summary.identical {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not identical after 90 s: {:#?}",
            summary.tables
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
