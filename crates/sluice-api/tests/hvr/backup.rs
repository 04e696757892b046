//! `GET /api/latest/backup` and `POST /api/latest/restore`: levels, the round trip, a corrupted
//! archive.

use super::*;

/// Sends `body` (an archive) to `path` with `token`.
async fn upload(api: &Api, token: &str, path: &str, body: Vec<u8>) -> Answer {
    let resp = api
        .http
        .post(format!("{}{path}", api.hub.base()))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    Answer {
        status: resp.status(),
        text: resp.text().await.unwrap(),
    }
}

/// Downloads an archive.
async fn download(api: &Api, token: &str, query: &str) -> (StatusCode, Vec<u8>) {
    let resp = api
        .http
        .get(format!("{}/api/latest/backup?{query}", api.hub.base()))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.bytes().await.unwrap().to_vec())
}

async fn document(api: &Api) -> Value {
    let hub = sluice_model::HubName::new("hub1").unwrap();
    let (defs, _) = api.hub.service().definitions(&hub).await.unwrap();
    sluice_service::definition::to_document(&defs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_need_hub_owner_and_restore_what_they_hold() {
    let api = Api::start(false).await;
    api.define(3).await;
    let before = document(&api).await;
    let writer = api.user("wendy", "ReadWrite").await;
    let owner = api.user("otto", "HubOwner").await;

    // Below HubOwner: refused, both ways.
    let (status, body) = download(&api, &writer, "hub=hub1").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "{}",
        String::from_utf8_lossy(&body)
    );
    // A HubOwner backs up the hub, but not the users or every hub.
    let (status, archive) = download(&api, &owner, "hub=hub1").await;
    assert_eq!(status, StatusCode::OK);
    for query in ["hub=hub1&with_users=true", ""] {
        let (status, _) = download(&api, &owner, query).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{query}");
    }
    upload(
        &api,
        &writer,
        "/api/latest/restore?plan=true",
        archive.clone(),
    )
    .await
    .expect(403);

    // The admin's whole backup; the hub is deleted; a HubOwner may not create it again.
    let (status, whole) = download(&api, &api.token, "with_users=true").await;
    assert_eq!(status, StatusCode::OK);
    api.call("DELETE", "/api/latest/hubs/hub1", None)
        .await
        .expect(200);
    upload(&api, &owner, "/api/latest/restore", archive.clone())
        .await
        .expect(403);

    // A corrupted archive: refused, nothing changes.
    let mut bad = whole.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x5a;
    let refused = upload(&api, &api.token, "/api/latest/restore", bad)
        .await
        .expect(400);
    assert!(refused.text.contains("corrupted"), "{}", refused.text);
    api.call("GET", "/api/latest/hubs/hub1", None)
        .await
        .expect(404);

    let plan = upload(
        &api,
        &api.token,
        "/api/latest/restore?plan=true",
        whole.clone(),
    )
    .await
    .expect(200)
    .json();
    assert_eq!(plan["hubs"][0]["hub_exists"], json!(false), "{plan}");
    // Planned as new; the restore holds the plan to it.
    upload(
        &api,
        &api.token,
        "/api/latest/restore?with_users=true&expect=hub1:new",
        whole.clone(),
    )
    .await
    .expect(200);
    assert_eq!(document(&api).await, before);
    // Planned as new, but it exists now: refused.
    let moved = upload(
        &api,
        &api.token,
        "/api/latest/restore?expect=hub1:new",
        whole,
    )
    .await
    .expect(400);
    assert!(moved.text.contains("changed since"), "{}", moved.text);
    // Now the HubOwner may restore their hub's archive.
    upload(&api, &owner, "/api/latest/restore", archive)
        .await
        .expect(200);
    assert_eq!(document(&api).await, before);
}
