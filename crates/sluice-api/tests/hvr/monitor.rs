//! HVR conformance: jobs, the job system, events, statistics, alerts and log files.

use super::*;

const JOB: &str = "ch1-refr-src-tgt";

impl Api {
    /// Posts a refresh of `ch1` (src → tgt); answers its event id.
    async fn refresh(&self, start: bool) -> String {
        let a = self
            .call(
                "POST",
                "/api/latest/hubs/hub1/channels/ch1/refresh",
                Some(json!({"source_loc": "src", "target_loc": "tgt", "start_immediate": start})),
            )
            .await
            .expect(201)
            .json();
        a["posted_ev_id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn jobs_answer_only_the_fields_fetch_asks_for() {
    let api = Api::start(false).await;
    api.define(3).await;
    let ev = api.refresh(true).await;
    assert_eq!(api.wait_event(&ev).await["state"], "DONE");
    let jobs = api
        .call("GET", "/api/v6.1.0.3/hubs/hub1/jobs", None)
        .await
        .expect(200)
        .json();
    let job = jobs[JOB].as_object().unwrap();
    let mut keys: Vec<&str> = job.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["num_retries", "state"], "{jobs}");
    let jobs = api
        .call(
            "GET",
            "/api/latest/hubs/hub1/jobs?fetch=latency&fetch=num_runs&fetch=last_ev_id",
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(jobs[JOB]["num_runs"], 1, "{jobs}");
    assert_eq!(jobs[JOB]["last_ev_id"], ev.as_str(), "{jobs}");
    assert!(jobs[JOB].get("last_run_begin").is_none(), "{jobs}");
    let a = api
        .call("GET", "/api/latest/hubs/hub1/jobs?fetch=passwords", None)
        .await
        .expect(400);
    assert!(a.text.contains("fetch"), "{}", a.text);
}

#[tokio::test]
async fn jobs_start_leaves_a_suspended_job_alone_unless_unsuspend() {
    let api = Api::start(false).await;
    api.define(3).await;
    let ev = api.refresh(false).await;
    let jobs = api
        .call("GET", "/api/latest/hubs/hub1/jobs", None)
        .await
        .json();
    assert_eq!(jobs[JOB]["state"], "SUSPEND", "{jobs}");
    let a = api
        .call(
            "POST",
            "/api/latest/hubs/hub1/jobs_start",
            Some(json!({"jobs": [JOB]})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({JOB: {"not_started": "Job in state 'SUSPEND'"}}));
    let events = api
        .call(
            "GET",
            &format!("/api/latest/hubs/hub1/events?ev_id={ev}"),
            None,
        )
        .await
        .json();
    assert_eq!(events[&ev]["state"], "ACTIVE", "{events}");
    api.call(
        "POST",
        "/api/latest/hubs/hub1/jobs_start",
        Some(json!({"jobs": [JOB], "unsuspend": true})),
    )
    .await
    .expect(204);
    assert_eq!(api.wait_event(&ev).await["state"], "DONE");
    api.call(
        "POST",
        "/api/latest/hubs/hub1/jobs_start",
        Some(json!({"jobs": ["ch1-refr-src-nope"]})),
    )
    .await
    .expect(404);
}

#[tokio::test]
async fn events_report_subtasks_and_accept_every_result_name() {
    let api = Api::start(false).await;
    api.define(3).await;
    let ev = api.refresh(true).await;
    api.wait_event(&ev).await;
    let path = format!(
        "/api/latest/hubs/hub1/events?ev_id={ev}&fetch_results=true\
         &result_pattern=Table_State|Subtasks_Done|Subtasks_Total|Source_Rows_Selected"
    );
    let events = api.call("GET", &path, None).await.expect(200).json();
    let results = events[&ev]["results"].as_array().unwrap().clone();
    let value = |name: &str| {
        results
            .iter()
            .find(|r| r["result"] == name)
            .map(|r| r["value"].clone())
    };
    assert_eq!(value("Subtasks_Done"), Some(json!("1")), "{events}");
    assert_eq!(value("Subtasks_Total"), Some(json!("1")), "{events}");
    assert_eq!(value("Table_State"), Some(json!("DONE")), "{events}");
    assert!(value("Source_Rows_Used").is_none(), "{events}");
    // Only the subtask counts, by pattern.
    let path = format!(
        "/api/latest/hubs/hub1/events?ev_id={ev}&fetch_results=true&result_pattern=Subtasks_*"
    );
    let events = api.call("GET", &path, None).await.expect(200).json();
    let names: Vec<&str> = events[&ev]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Subtasks_Done", "Subtasks_Total", "Subtasks_Busy"],
        "{events}"
    );
    let a = api
        .call(
            "GET",
            "/api/latest/hubs/hub1/events?fetch_results=true&result_pattern=No_Such_Result",
            None,
        )
        .await
        .expect(400);
    assert!(a.text.contains("No_Such_Result"), "{}", a.text);
}

#[tokio::test]
async fn events_are_counted_by_type_channel_and_location_and_listed_across_hubs() {
    let api = Api::start(false).await;
    api.define(3).await;
    let ev = api.refresh(true).await;
    api.wait_event(&ev).await;
    let types = api
        .call("GET", "/api/latest/hubs/hub1/event_types", None)
        .await
        .expect(200)
        .json();
    assert_eq!(types["Refresh"], 1, "{types}");
    assert!(types["Hub_Create"].as_u64().is_some(), "{types}");
    let channels = api
        .call(
            "GET",
            "/api/latest/hubs/hub1/event_channels?type=Refresh",
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(channels, json!({"ch1": 1}));
    let locs = api
        .call("GET", "/api/latest/hubs/hub1/event_locs?type=Refresh", None)
        .await
        .expect(200)
        .json();
    assert_eq!(locs, json!({"src": 1, "tgt": 1}));
    api.call("GET", "/api/latest/hubs/hub1/event_types?state=BOGUS", None)
        .await
        .expect(400);
    api.call("GET", "/api/latest/hubs/nohub/event_types", None)
        .await
        .expect(404);
    let all = api
        .call("GET", "/api/latest/repos/events?type=Refresh", None)
        .await
        .expect(200)
        .json();
    assert_eq!(all[&ev]["hub"], "hub1", "{all}");
    assert_eq!(all[&ev]["type"], "Refresh", "{all}");
    let types = api
        .call("GET", "/api/latest/repos/event_types", None)
        .await
        .expect(200)
        .json();
    assert_eq!(types["Refresh"], 1, "{types}");
}

#[tokio::test]
async fn job_attributes_and_env_vars_are_kept_checked_and_deleted_with_the_job() {
    let api = Api::start(false).await;
    api.define(3).await;
    let ev = api.refresh(true).await;
    api.wait_event(&ev).await;
    let base = format!("/api/latest/hubs/hub1/jobs/{JOB}");
    api.call(
        "PUT",
        &format!("{base}/attributes/quota_run"),
        Some(json!({"arg1": "2"})),
    )
    .await
    .expect(204);
    api.call(
        "PUT",
        &format!("{base}/env_vars/HVR_TMP"),
        Some(json!({"value": "/tmp/x"})),
    )
    .await
    .expect(204);
    let attrs = api
        .call("GET", &format!("{base}/attributes"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(attrs, json!({"quota_run": {"arg1": "2"}}));
    let env = api
        .call("GET", &format!("{base}/env_vars"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(env, json!({"HVR_TMP": "/tmp/x"}));
    // Hostile names change nothing.
    for (path, status) in [
        (format!("{base}/attributes/..%2Fetc"), 400),
        (format!("{base}/attributes/set"), 400),
        (format!("{base}/env_vars/A=B"), 400),
        (
            "/api/latest/hubs/hub1/jobs/ch1-refr-src-nope/attributes/quota_run".to_owned(),
            404,
        ),
    ] {
        let body = if path.contains("env_vars") {
            json!({"value": "x"})
        } else {
            json!({"arg1": "x"})
        };
        api.call("PUT", &path, Some(body)).await.expect(status);
    }
    let reader = api.user("reader", "ReadOnly").await;
    api.call_as(
        Some(&reader),
        "PUT",
        &format!("{base}/attributes/retry_max"),
        Some(json!({"arg1": "3"})),
    )
    .await
    .expect(403);
    // The job system's own.
    api.call(
        "PUT",
        "/api/latest/hubs/hub1/job_system/env_vars/TZ",
        Some(json!({"value": "UTC"})),
    )
    .await
    .expect(204);
    let env = api
        .call("GET", "/api/latest/hubs/hub1/job_system/env_vars", None)
        .await
        .expect(200)
        .json();
    assert_eq!(env, json!({"TZ": "UTC"}));
    api.call(
        "DELETE",
        "/api/latest/hubs/hub1/job_system/env_vars/TZ",
        None,
    )
    .await
    .expect(204);
    api.call(
        "DELETE",
        "/api/latest/hubs/hub1/job_system/env_vars/TZ",
        None,
    )
    .await
    .expect(404);
    api.call("DELETE", &format!("{base}/attributes/quota_run"), None)
        .await
        .expect(204);
    // A job's bags go with it.
    api.call("DELETE", &base, None).await.expect(200);
    let ev = api.refresh(true).await;
    api.wait_event(&ev).await;
    let env = api
        .call("GET", &format!("{base}/env_vars"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(env, json!({}));
}

#[tokio::test]
async fn stats_are_computed_from_refresh_results() {
    let api = Api::start(false).await;
    api.define(3).await;
    let ev = api.refresh(true).await;
    api.wait_event(&ev).await;
    let m = api
        .call(
            "GET",
            "/api/latest/hubs/hub1/stats/metrics?fetch_values=true&metric=Refresh%20Rows\
             &metric=Refresh%20Failures&time_gran=1440&scope=clt&scope=***&tstamp_begin=0",
            None,
        )
        .await
        .expect(200)
        .json();
    let rows = m["Refresh Rows"]["1440"]["clt"]["ch1"]["tgt"]["orders"]
        .as_object()
        .unwrap_or_else(|| panic!("{m}"));
    assert_eq!(rows.values().collect::<Vec<_>>(), [&json!(3)], "{m}");
    let all = m["Refresh Rows"]["1440"]["***"]["*"]["*"]["*"]
        .as_object()
        .unwrap_or_else(|| panic!("{m}"));
    assert_eq!(all.values().collect::<Vec<_>>(), [&json!(3)], "{m}");
    let failures = &m["Refresh Failures"]["1440"]["clt"]["ch1"]["tgt"]["orders"];
    assert_eq!(
        failures.as_object().unwrap().values().collect::<Vec<_>>(),
        [&json!(0)],
        "{m}"
    );
    // Without fetch_values: which values exist, not the values.
    let m = api
        .call(
            "GET",
            "/api/latest/hubs/hub1/stats/metrics?metric=Refresh%20Rows",
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        m["Refresh Rows"]["1"]["clt"]["ch1"]["tgt"]["orders"],
        json!({})
    );
    // The future has no values.
    let m = api
        .call(
            "GET",
            "/api/latest/hubs/hub1/stats/metrics?tstamp_begin=2999-01-01T00:00:00Z",
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(m, json!({}));
    for bad in [
        "metric=No%20Such",
        "time_gran=7",
        "scope=c%27%3B",
        "tstamp_begin=yesterday",
    ] {
        api.call(
            "GET",
            &format!("/api/latest/hubs/hub1/stats/metrics?{bad}"),
            None,
        )
        .await
        .expect(400);
    }
    let oldest = api
        .call(
            "GET",
            "/api/latest/hubs/hub1/stats/oldest?time_gran=60&scope=c**",
            None,
        )
        .await
        .expect(200)
        .json();
    assert!(
        oldest["60"]["c**"].as_str().unwrap().ends_with('Z'),
        "{oldest}"
    );
    let r = api
        .call(
            "POST",
            "/api/latest/hubs/hub1/stats/metrics/export",
            Some(json!({"format": "csv", "metric": ["Refresh Rows"], "time_gran": ["1440"]})),
        )
        .await
        .expect(200)
        .json();
    let reference = r["ref"].as_str().unwrap();
    let csv = api.call("GET", reference, None).await.expect(200).text;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("metric,time_gran,scope,channel,loc,table,tstamp,value")
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("Refresh Rows,1440,clt,ch1,tgt,orders,"),
        "{csv}"
    );
    assert!(row.ends_with(",3"), "{csv}");
    api.call(
        "POST",
        "/api/latest/hubs/hub1/stats/metrics/export",
        Some(json!({"format": "xlsx"})),
    )
    .await
    .expect(400);
    api.call(
        "GET",
        "/api/latest/hubs/hub1/stats/metrics/export?ref=..%2F..%2Fetc%2Fpasswd",
        None,
    )
    .await
    .expect(400);
}

impl Api {
    /// The notifications on `sluice.alert` so far.
    async fn alerts_delivered(&self) -> Vec<Value> {
        let page = self
            .call("GET", "/events/sluice.alert/history", None)
            .await
            .expect(200)
            .json();
        page["items"].as_array().unwrap().clone()
    }

    /// Waits a little for notifications to settle; answers them.
    async fn alerts_after_a_while(&self, want: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let got = self.alerts_delivered().await;
            if got.len() >= want || Instant::now() > deadline {
                // A little longer, to see that no more arrive.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return self.alerts_delivered().await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn payloads_of(alerts: &[Value], alert: &str) -> Vec<Value> {
    alerts
        .iter()
        .map(|a| a["payload"].clone())
        .filter(|p| p["alert"] == alert)
        .collect()
}

#[tokio::test]
async fn an_alert_on_failed_refreshes_fires_when_one_fails_and_not_when_it_succeeds() {
    let api = Api::start(false).await;
    api.define(3).await;
    for (name, props) in [
        (
            "failed_refresh",
            json!({"Event_Types": "Refresh", "Description": "refresh failed"}),
        ),
        ("off", json!({"Event_Types": "Refresh"})),
    ] {
        api.call(
            "POST",
            "/api/latest/hubs/hub1/alerts",
            Some(json!({"alert": name, "props": props})),
        )
        .await
        .expect(201);
    }
    api.call("POST", "/api/latest/hubs/hub1/alerts/off/disable", None)
        .await
        .expect(204);
    let names = api
        .call("GET", "/api/latest/hubs/hub1/alerts", None)
        .await
        .expect(200)
        .json();
    assert_eq!(names, json!(["failed_refresh", "off"]));
    // A refresh that succeeds fires nothing.
    let ev = api.refresh(true).await;
    assert_eq!(api.wait_event(&ev).await["state"], "DONE");
    let delivered = api.alerts_after_a_while(1).await;
    assert!(
        payloads_of(&delivered, "failed_refresh").is_empty(),
        "{delivered:?}"
    );
    // One that fails fires once, on the enabled alert only.
    let src = api.hub.dir().join("src.db");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch("UPDATE orders SET amount = 'not a number' WHERE id = 1;")
        .unwrap();
    let a = api
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/refresh",
            Some(json!({"source_loc": "src", "target_loc": "tgt"})),
        )
        .await;
    if a.status.as_u16() == 201 {
        let ev = a.json()["posted_ev_id"].as_str().unwrap().to_owned();
        assert_eq!(api.wait_event(&ev).await["state"], "FAILED");
    } else {
        panic!("the refresh was refused at submit time: {}", a.text);
    }
    let delivered = api.alerts_after_a_while(1).await;
    let fired = payloads_of(&delivered, "failed_refresh");
    assert_eq!(fired.len(), 1, "{delivered:?}");
    assert_eq!(fired[0]["hub"], "hub1");
    assert_eq!(fired[0]["cause"]["type"], "Refresh");
    assert_eq!(fired[0]["cause"]["state"], "FAILED");
    assert!(payloads_of(&delivered, "off").is_empty(), "{delivered:?}");
    let props = api
        .call(
            "GET",
            "/api/latest/hubs/hub1/alerts/failed_refresh/props",
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(props["Alert_State"], "RAISED", "{props}");
    assert_eq!(props["Notification_Count"], 1, "{props}");
    api.call(
        "POST",
        "/api/latest/hubs/hub1/alerts/failed_refresh/clear",
        None,
    )
    .await
    .expect(204);
    let props = api
        .call(
            "GET",
            "/api/latest/hubs/hub1/alerts/failed_refresh/props?fetch=Alert_State",
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(props, json!({"Alert_State": "CLEAR"}));
    // test sends one now; execute evaluates now (the failed event is older than the last
    // notification, so nothing new matches).
    api.call("POST", "/api/latest/hubs/hub1/alerts/off/test", None)
        .await
        .expect(204);
    let delivered = api.alerts_after_a_while(2).await;
    assert_eq!(payloads_of(&delivered, "off")[0]["reason"], "test");
    let text = api
        .call(
            "POST",
            "/api/latest/hubs/hub1/alerts/failed_refresh/execute",
            None,
        )
        .await
        .expect(200)
        .text;
    assert!(text.contains("failed_refresh"), "{text}");
}

#[tokio::test]
async fn alert_props_are_checked_and_names_are_looked_up() {
    let api = Api::start(false).await;
    api.define(3).await;
    let create = |body: Value| api.call("POST", "/api/latest/hubs/hub1/alerts", Some(body));
    create(json!({"alert": "a1", "props": {}}))
        .await
        .expect(201);
    create(json!({"alert": "a1", "props": {}}))
        .await
        .expect(400);
    create(json!({"alert": "../x", "props": {}}))
        .await
        .expect(400);
    create(json!({"alert": "b", "props": {"Command": "rm -rf /"}}))
        .await
        .expect(400);
    create(json!({"alert": "b", "props": {"Job_States": "EXPLODED"}}))
        .await
        .expect(400);
    let base = "/api/latest/hubs/hub1/alerts/a1";
    api.call(
        "PATCH",
        &format!("{base}/props"),
        Some(json!({"Job_States": "FAILED,RETRY", "Channels": ["ch1"]})),
    )
    .await
    .expect(204);
    api.call(
        "PATCH",
        &format!("{base}/props"),
        Some(json!({"Alert_State": "CLEAR"})),
    )
    .await
    .expect(400);
    api.call(
        "POST",
        &format!("{base}/props_delete"),
        Some(json!({"props": ["Channels"]})),
    )
    .await
    .expect(204);
    let props = api
        .call("GET", &format!("{base}/props"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(props, json!({"Job_States": "FAILED,RETRY"}));
    api.call(
        "PUT",
        &format!("{base}/props"),
        Some(json!({"Description": "only this"})),
    )
    .await
    .expect(204);
    let props = api
        .call("GET", &format!("{base}/props"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(props, json!({"Description": "only this"}));
    let reader = api.user("reader", "ReadOnly").await;
    api.call_as(Some(&reader), "DELETE", base, None)
        .await
        .expect(403);
    api.call("DELETE", base, None).await.expect(204);
    api.call("DELETE", base, None).await.expect(404);
    api.call("POST", "/api/latest/hubs/hub1/alerts/nope/test", None)
        .await
        .expect(404);
}

#[tokio::test]
async fn log_files_are_event_logs_looked_up_by_name() {
    let api = Api::start(false).await;
    api.define(3).await;
    let ev = api.refresh(true).await;
    api.wait_event(&ev).await;
    let hub_log = api
        .call("GET", "/api/latest/hubs/hub1/logs/hvr.out", None)
        .await
        .expect(200)
        .text;
    assert!(hub_log.contains(&format!("{ev} Refresh: ")), "{hub_log}");
    let job_log = api
        .call(
            "GET",
            &format!("/api/latest/hubs/hub1/logs/{JOB}.out?max_lines=1"),
            None,
        )
        .await
        .expect(200)
        .text;
    assert_eq!(job_log.lines().count(), 1, "{job_log}");
    // No refresh failed.
    let err = api
        .call("GET", "/api/latest/hubs/hub1/logs/hvr.err", None)
        .await
        .expect(200)
        .text;
    assert_eq!(err, "");
    let day = &ev[..10].replace('-', "");
    let archived = api
        .call(
            "GET",
            &format!("/api/latest/hubs/hub1/logs/hvr.out/archive/{day}"),
            None,
        )
        .await
        .expect(200)
        .text;
    assert_eq!(archived, hub_log);
    let found = api
        .call(
            "GET",
            "/api/latest/hubs/hub1/logs/hvr.out/search?search_tstamp=2999-01-01T00:00:00Z",
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(found["offset"], hub_log.len().to_string());
    let control = api
        .call(
            "GET",
            &format!("/api/latest/hubs/hub1/jobs/{JOB}/controls/{ev}/log"),
            None,
        )
        .await
        .expect(200)
        .text;
    assert!(control.contains(&ev), "{control}");
    let server = api
        .call("GET", "/api/latest/logs/hvr.out", None)
        .await
        .expect(200)
        .text;
    assert!(server.contains(&format!("hub1 {ev} Refresh: ")), "{server}");
    let reader = api.user("reader", "ReadOnly").await;
    api.call_as(Some(&reader), "GET", "/api/latest/logs/hvr.out", None)
        .await
        .expect(403);
    // Names are looked up, never opened.
    for path in [
        "/api/latest/hubs/hub1/logs/..%2F..%2Fetc%2Fpasswd",
        "/api/latest/hubs/hub1/logs/hub.db",
        "/api/latest/logs/%2Fetc%2Fpasswd.out",
        "/api/latest/hubs/hub1/logs/hvr.out/archive/..%2Fx",
        "/api/latest/hubs/hub1/jobs/ch1-refr-src-tgt/controls/nope/log",
    ] {
        api.call("GET", path, None).await.expect(404);
    }
}
