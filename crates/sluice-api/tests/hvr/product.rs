//! HVR conformance: product.

use super::*;

#[tokio::test]
async fn operations_of_hvrs_own_product_say_why_sluice_has_none() {
    let api = Api::start(false).await;
    api.define(3).await;
    for (method, path, word) in [
        ("GET", "/api/v6.1.0.3/licenses", "licences"),
        ("POST", "/api/v6.1.0.3/metering/upload", "licences"),
        ("GET", "/api/latest/hubs/hub1/locs/src/agent", "agent"),
        ("POST", "/api/latest/hubs/hub1/new_loc/agent_get", "agent"),
        ("POST", "/api/v6.1.0.3/hubserver/restart", "service manager"),
    ] {
        let a = api.call(method, path, Some(json!({}))).await.expect(501);
        assert!(a.text.starts_with("F_JA0501: sluice "), "{}", a.text);
        assert!(a.text.contains(word), "{path}: {}", a.text);
        // Anonymous callers learn nothing beyond "log in".
        api.call_as(None, method, path, None).await.expect(401);
    }
}

#[tokio::test]
async fn errors_name_the_path_and_version_the_client_used() {
    let api = Api::start(false).await;
    let a = api
        .call("GET", "/api/v6.1.0.3/no_such_thing", None)
        .await
        .expect(404);
    assert_eq!(
        a.text,
        "F_JA0404: no such route: /api/v6.1.0.3/no_such_thing"
    );
    let a = api.call("PUT", "/api/v6.0.5/hubs", None).await.expect(405);
    assert!(a.text.contains("/api/v6.0.5/hubs"), "{}", a.text);
    assert!(!a.text.contains("latest"), "{}", a.text);
}
