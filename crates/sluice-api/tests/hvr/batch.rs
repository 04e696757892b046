//! Batch operations (a sluice extension): `POST /api/latest/hubs/{hub}/batch/{verb}` posts one
//! event per channel matching a pattern and runs their jobs, at most `parallel` at a time.

use sluice_model::{EventState, EventType, HubName};
use sluice_service::EventFilter;

use super::*;

/// Hub `bh`: SQLite source `src` (table `orders` of `rows` rows), targets `t00`… and channels
/// `sales_00`… (one per target, `count` of them), `sales_bad` (no Integrate action: it cannot
/// be refreshed) and `stock` (not matched by `sales_*`).
async fn define_sales(api: &Api, count: usize, rows: usize) {
    let dir = api.hub.dir().to_owned();
    sqlite_pair(&dir, rows);
    let mut yaml = String::from(
        "hub: bh\nlocations:\n  src: {class: sqlite, props: {Database_Name: src.db}}\n",
    );
    for i in 0..count {
        yaml.push_str(&format!(
            "  t{i:02}: {{class: sqlite, props: {{Database_Name: t{i:02}.db}}}}\n"
        ));
    }
    yaml.push_str("channels:\n");
    let channel = |name: &str, target: &str, integrate: bool| {
        let mut c = format!(
            "  {name}:\n    loc_groups: {{SOURCE: [src], TARGET: [{target}]}}\n    tables: {{orders: {{}}}}\n    actions:\n      - {{type: Capture, loc_scope: SOURCE}}\n"
        );
        if integrate {
            c.push_str("      - {type: Integrate, loc_scope: TARGET}\n");
        }
        c
    };
    for i in 0..count {
        yaml.push_str(&channel(
            &format!("sales_{i:02}"),
            &format!("t{i:02}"),
            true,
        ));
    }
    yaml.push_str(&channel("sales_bad", "t00", false));
    yaml.push_str(&channel("stock", "t00", true));
    let file = dir.join("batch.yaml");
    std::fs::write(&file, yaml).unwrap();
    api.hub.service().apply_file(&file, None).await.unwrap();
}

fn bh() -> HubName {
    HubName::new("bh").unwrap()
}

/// The hub's job-run events (refresh, compare, activate, deactivate).
async fn job_events(api: &Api) -> Vec<sluice_service::EventRecord> {
    api.hub
        .service()
        .events(&EventFilter {
            hub: Some(bh()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            matches!(
                e.event_type,
                EventType::Refresh
                    | EventType::Compare
                    | EventType::Activate
                    | EventType::Deactivate
            )
        })
        .collect()
}

/// Waits until none of `ids` is ACTIVE; answers them.
async fn wait_all(api: &Api, ids: &[sluice_model::EventId]) -> Vec<sluice_service::EventRecord> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let events = api
            .hub
            .service()
            .events(&EventFilter {
                hub: Some(bh()),
                ids: ids.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(events.len(), ids.len(), "events missing");
        if events.iter().all(|e| e.state != EventState::Active) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "events still ACTIVE after 120 s: {:?}",
            events
                .iter()
                .filter(|e| e.state == EventState::Active)
                .map(|e| e.id)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The most runs of the hub's jobs that overlapped in time (each job's last run, from when it
/// was claimed to when it ended).
async fn max_overlap(api: &Api) -> usize {
    let runs: Vec<_> = api
        .hub
        .service()
        .jobs(&bh())
        .await
        .unwrap()
        .into_iter()
        .map(|j| {
            let begin = j
                .run_begin
                .unwrap_or_else(|| panic!("job {} never ran", j.name));
            let end = j
                .run_end
                .unwrap_or_else(|| panic!("job {} did not end", j.name));
            (begin, end)
        })
        .collect();
    runs.iter()
        .map(|(begin, _)| {
            // Runs in progress at the moment one began.
            runs.iter().filter(|(b, e)| b <= begin && begin < e).count()
        })
        .max()
        .unwrap_or(0)
}

fn ev_ids(answer: &Value) -> Vec<sluice_model::EventId> {
    answer["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["ev_id"].as_str())
        .map(|id| id.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_refresh_posts_one_event_per_channel_and_all_end_done() {
    let api = Api::start(false).await;
    define_sales(&api, 20, 50).await;
    let answer = api
        .call(
            "POST",
            "/api/latest/hubs/bh/batch/refresh",
            Some(json!({"channels": "sales_*"})),
        )
        .await
        .expect(201)
        .json();
    assert_eq!(answer["parallel"], 4, "{answer}");
    let channels = answer["channels"].as_array().unwrap();
    // 20 posted and the one that cannot be refreshed listed with its error; `stock` untouched.
    assert_eq!(channels.len(), 21, "{answer}");
    let bad = channels
        .iter()
        .find(|c| c["channel"] == "sales_bad")
        .unwrap();
    assert!(bad["ev_id"].is_null(), "{bad}");
    assert_eq!(bad["kind"], "invalid", "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("Integrate"),
        "{bad}"
    );
    let ids = ev_ids(&answer);
    assert_eq!(ids.len(), 20, "{answer}");
    for c in channels.iter().filter(|c| c["channel"] != "sales_bad") {
        let name = c["channel"].as_str().unwrap();
        assert_eq!(c["job"], format!("{name}-refr-src-t{}", &name[6..]), "{c}");
    }

    let events = wait_all(&api, &ids).await;
    for e in &events {
        assert_eq!(e.state, EventState::Done, "{e:?}");
        assert_eq!(e.event_type, EventType::Refresh);
    }
    // Exactly the 20 events: nothing for `stock` or `sales_bad`.
    assert_eq!(job_events(&api).await.len(), 20);
    assert!(max_overlap(&api).await <= 4);
    // Every target has the rows.
    for i in 0..20 {
        let conn = rusqlite::Connection::open(api.hub.dir().join(format!("t{i:02}.db"))).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 50, "t{i:02}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_runs_at_most_parallel_jobs_at_once() {
    let api = Api::start(false).await;
    define_sales(&api, 6, 20_000).await;
    let answer = api
        .call(
            "POST",
            "/api/latest/hubs/bh/batch/refresh",
            Some(json!({"channels": "sales_0?", "parallel": 2})),
        )
        .await
        .expect(201)
        .json();
    assert_eq!(answer["parallel"], 2);
    let ids = ev_ids(&answer);
    assert_eq!(ids.len(), 6, "{answer}");
    // Every event is posted at once, before the jobs run.
    assert_eq!(job_events(&api).await.len(), 6);
    for e in wait_all(&api, &ids).await {
        assert_eq!(e.state, EventState::Done, "{e:?}");
    }
    assert_eq!(
        max_overlap(&api).await,
        2,
        "runs overlapping: not 2 at a time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_refuses_bad_requests_and_posts_nothing() {
    let api = Api::start(false).await;
    define_sales(&api, 2, 10).await;
    let viewer = api.user("viewer", "ReadOnly").await;
    let runner = api.user("runner", "ReadExecRefresh").await;
    let refresh = "/api/latest/hubs/bh/batch/refresh";

    // A pattern matching no channel.
    let a = api
        .call("POST", refresh, Some(json!({"channels": "hr_*"})))
        .await
        .expect(400);
    assert!(a.text.contains("no channel matches"), "{}", a.text);
    // A ReadOnly user may not refresh; a ReadExecRefresh user may not activate.
    api.call_as(
        Some(&viewer),
        "POST",
        refresh,
        Some(json!({"channels": "sales_*"})),
    )
    .await
    .expect(403);
    api.call_as(
        Some(&runner),
        "POST",
        "/api/latest/hubs/bh/batch/activate",
        Some(json!({"channels": "sales_*"})),
    )
    .await
    .expect(403);
    // Bad parallelism, an option of another verb, a broken pattern, an unknown field.
    for body in [
        json!({"channels": "sales_*", "parallel": 0}),
        json!({"channels": "sales_*", "parallel": 33}),
        json!({"channels": "sales_*", "granularity": "rowwise"}),
        json!({"channels": "[sales"}),
        json!({"channels": "sales_*", "source_loc": "src"}),
    ] {
        api.call("POST", refresh, Some(body.clone()))
            .await
            .expect(400);
    }
    // A frozen hub starts no job: the batch is refused as a whole.
    api.call("POST", "/api/latest/hubs/bh/freeze", None)
        .await
        .expect(204);
    let a = api
        .call("POST", refresh, Some(json!({"channels": "sales_*"})))
        .await
        .expect(400);
    assert!(a.text.contains("FROZEN"), "{}", a.text);
    api.call("POST", "/api/latest/hubs/bh/unfreeze", None)
        .await
        .expect(204);
    assert!(job_events(&api).await.is_empty(), "something was posted");
    assert!(api.hub.service().jobs(&bh()).await.unwrap().is_empty());

    // The same user may compare (ReadExec suffices) once the pattern matches.
    let a = api
        .call_as(
            Some(&runner),
            "POST",
            "/api/latest/hubs/bh/batch/compare",
            Some(json!({"channels": "sales_0[01]", "parallel": 1})),
        )
        .await
        .expect(201)
        .json();
    let ids = ev_ids(&a);
    assert_eq!(ids.len(), 2, "{a}");
    for e in wait_all(&api, &ids).await {
        assert_eq!(e.event_type, EventType::Compare);
        assert_ne!(e.state, EventState::Active);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_activates_and_deactivates_channels() {
    let api = Api::start(false).await;
    define_sales(&api, 2, 10).await;
    let answer = api
        .call(
            "POST",
            "/api/latest/hubs/bh/batch/activate",
            Some(json!({"channels": "sales_0?", "refresh": true, "parallel": 1})),
        )
        .await
        .expect(201)
        .json();
    let ids = ev_ids(&answer);
    assert_eq!(ids.len(), 2, "{answer}");
    for e in wait_all(&api, &ids).await {
        assert_eq!(e.event_type, EventType::Activate);
        assert_eq!(e.state, EventState::Done, "{e:?}");
    }
    // The initial load ran for each.
    for db in ["t00.db", "t01.db"] {
        let conn = rusqlite::Connection::open(api.hub.dir().join(db)).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 10, "{db}");
    }
    let answer = api
        .call(
            "POST",
            "/api/latest/hubs/bh/batch/deactivate",
            Some(json!({"channels": "sales_0?"})),
        )
        .await
        .expect(201)
        .json();
    let ids = ev_ids(&answer);
    assert_eq!(ids.len(), 2, "{answer}");
    for e in wait_all(&api, &ids).await {
        assert_eq!(e.event_type, EventType::Deactivate);
        assert_eq!(e.state, EventState::Done, "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_whose_job_runs_is_listed_as_a_conflict_and_the_others_go_on() {
    let api = Api::start(false).await;
    define_sales(&api, 3, 100_000).await;
    // sales_00's refresh is running when the batch comes.
    let running = api
        .hub
        .service()
        .submit_refresh_detached(
            sluice_service::RefreshCommand::try_from(&sluice_service::RefreshRequest {
                hub: "bh".into(),
                channel: "sales_00".into(),
                ..Default::default()
            })
            .unwrap(),
            true,
        )
        .await
        .unwrap();
    let answer = api
        .call(
            "POST",
            "/api/latest/hubs/bh/batch/refresh",
            Some(json!({"channels": "sales_0?"})),
        )
        .await
        .expect(201)
        .json();
    let channels = answer["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 3, "{answer}");
    assert_eq!(channels[0]["channel"], "sales_00");
    assert_eq!(channels[0]["kind"], "conflict", "{answer}");
    let ids = ev_ids(&answer);
    assert_eq!(ids.len(), 2, "{answer}");
    let mut all = ids.clone();
    all.push(running.event);
    for e in wait_all(&api, &all).await {
        assert_eq!(e.state, EventState::Done, "{e:?}");
    }
}
