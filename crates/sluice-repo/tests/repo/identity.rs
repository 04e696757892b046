//! The contract of users, tokens and API keys (`IdentityStore`).

use super::*;

// ---------------------------------------------------------------------------------------------
// Users, tokens, settings.

fn user(name: &str) -> UserRecord {
    UserRecord {
        name: name.into(),
        level: AccessLevel::ReadWrite,
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt${name}"),
        // Stored to the microsecond.
        created: Utc::now().trunc_subsecs(6),
        creator: "admin".into(),
    }
}

fn token(hash: &str, user: &str, kind: &str, age_seconds: i64) -> TokenRecord {
    let created =
        Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() - TimeDelta::seconds(age_seconds);
    TokenRecord {
        hash: hash.into(),
        user: user.into(),
        kind: kind.into(),
        created,
        expires: created + TimeDelta::days(30),
    }
}

async fn users_and_tokens(fx: Fixture) {
    let (bob, alice) = (user("bob"), user("alice"));
    fx.create_user(&bob).await.unwrap();
    fx.create_user(&alice).await.unwrap();
    assert_eq!(fx.users().await.unwrap(), vec![alice.clone(), bob.clone()]);
    assert_eq!(fx.user("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(fx.user("nobody").await.unwrap(), None);
    let error = fx.create_user(&user("alice")).await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");

    fx.update_user("alice", Some(AccessLevel::ReadOnly), None)
        .await
        .unwrap();
    let changed = fx.user("alice").await.unwrap().unwrap();
    assert_eq!(
        (changed.level, changed.password_hash.as_str()),
        (AccessLevel::ReadOnly, alice.password_hash.as_str())
    );
    fx.update_user("alice", None, Some("new-hash"))
        .await
        .unwrap();
    let changed = fx.user("alice").await.unwrap().unwrap();
    assert_eq!(
        (changed.level, changed.password_hash.as_str()),
        (AccessLevel::ReadOnly, "new-hash")
    );
    let error = fx
        .update_user("nobody", Some(AccessLevel::HubOwner), None)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");

    let (r1, r2, key) = (
        token("r1", "alice", "refresh", 20),
        token("r2", "bob", "refresh", 10),
        token("k1", "alice", "apikey", 5),
    );
    for t in [&r2, &key, &r1] {
        fx.put_token(t).await.unwrap();
    }
    assert_eq!(
        fx.tokens("refresh", None).await.unwrap(),
        vec![r1.clone(), r2.clone()],
        "oldest first"
    );
    assert_eq!(
        fx.tokens("refresh", Some("bob")).await.unwrap(),
        vec![r2.clone()]
    );
    assert_eq!(
        fx.tokens("apikey", Some("alice")).await.unwrap(),
        vec![key.clone()]
    );
    assert_eq!(fx.token("k1").await.unwrap(), Some(key.clone()));
    fx.delete_token("k1").await.unwrap();
    fx.delete_token("never-issued").await.unwrap();
    assert_eq!(fx.token("k1").await.unwrap(), None);

    // Deleting a user deletes their tokens.
    fx.delete_user("alice").await.unwrap();
    assert_eq!(fx.token("r1").await.unwrap(), None);
    assert_eq!(fx.tokens("refresh", None).await.unwrap(), vec![r2]);
    let error = fx.delete_user("alice").await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");
    assert_eq!(fx.users().await.unwrap(), vec![bob]);
}

async fn a_token_is_taken_once(fx: Fixture) {
    fx.create_user(&user("alice")).await.unwrap();
    let t = token("rotate-me", "alice", "refresh", 0);
    fx.put_token(&t).await.unwrap();
    assert_eq!(fx.take_token("rotate-me").await.unwrap(), Some(t.clone()));
    assert_eq!(fx.take_token("rotate-me").await.unwrap(), None);
    assert_eq!(fx.token("rotate-me").await.unwrap(), None);

    // Racing takers through two instances: exactly one gets it.
    fx.put_token(&t).await.unwrap();
    let other = fx.reopen().await.unwrap();
    let mut handles = Vec::new();
    for i in 0..8 {
        let repo = if i % 2 == 0 {
            fx.handle.clone()
        } else {
            other.clone()
        };
        handles.push(tokio::spawn(
            async move { repo.take_token("rotate-me").await },
        ));
    }
    let mut got = 0;
    for h in handles {
        if let Some(taken) = h.await.unwrap().unwrap() {
            assert_eq!(taken, t);
            got += 1;
        }
    }
    assert_eq!(got, 1);
}

async fn api_keys_are_created_listed_and_deleted(fx: Fixture) {
    let key = |id: &str, age: i64, level: AccessLevel| ApiKeyRecord {
        key: id.into(),
        secret_hash: format!("hash-of-{id}"),
        level,
        created: Utc::now().trunc_subsecs(6) - TimeDelta::seconds(age),
        creator: "admin".into(),
        description: format!("key {id}"),
    };
    let (old, new) = (
        key("k_old", 20, AccessLevel::ReadOnly),
        key("k_new", 10, AccessLevel::ReadExecRefresh),
    );
    fx.create_api_key(&new).await.unwrap();
    fx.create_api_key(&old).await.unwrap();
    let error = fx
        .create_api_key(&key("k_old", 0, AccessLevel::SysAdmin))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    assert_eq!(fx.api_keys().await.unwrap(), vec![old.clone(), new.clone()]);
    assert_eq!(fx.api_key("k_new").await.unwrap(), Some(new.clone()));
    assert_eq!(fx.api_key("nope").await.unwrap(), None);
    fx.delete_api_key("k_old").await.unwrap();
    let error = fx.delete_api_key("k_old").await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");
    assert_eq!(fx.api_keys().await.unwrap(), vec![new]);
}

on_both_backends!(
    users_and_tokens,
    a_token_is_taken_once,
    api_keys_are_created_listed_and_deleted,
);
