//! The contract of property bags (`PropStore`).

use super::*;
use serde_json::json;

fn changes(
    pairs: &[(&str, Option<serde_json::Value>)],
) -> BTreeMap<String, Option<serde_json::Value>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

async fn bags_are_created_merged_replaced_and_deleted(fx: Fixture) {
    with_definitions(&fx).await;
    let alert = PropBag::Alert(hub1(), "late".into());
    assert_eq!(fx.props(&alert).await.unwrap(), None);
    // Merging into a missing bag that must exist changes nothing.
    let err = fx
        .write_props(
            &alert,
            &changes(&[("a", Some(json!(1)))]),
            PropWrite::MergeExisting,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RepoErrorKind::NotFound);
    assert_eq!(fx.props(&alert).await.unwrap(), None);

    let stored = fx
        .write_props(
            &alert,
            &changes(&[("a", Some(json!(1))), ("b", Some(json!({"x": "y"})))]),
            PropWrite::Create,
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    let err = fx
        .write_props(&alert, &changes(&[]), PropWrite::Create)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RepoErrorKind::Conflict);

    let stored = fx
        .write_props(
            &alert,
            &changes(&[("a", None), ("c", Some(json!("three")))]),
            PropWrite::MergeExisting,
        )
        .await
        .unwrap();
    assert_eq!(
        stored.into_iter().collect::<Vec<_>>(),
        vec![
            ("b".into(), json!({"x": "y"})),
            ("c".into(), json!("three"))
        ]
    );
    let stored = fx
        .write_props(
            &alert,
            &changes(&[("d", Some(json!(true)))]),
            PropWrite::Replace,
        )
        .await
        .unwrap();
    assert_eq!(stored.keys().collect::<Vec<_>>(), vec!["d"]);

    // A bag with no props exists until it is deleted.
    let empty = PropBag::Alert(hub1(), "quiet".into());
    fx.write_props(&empty, &changes(&[]), PropWrite::Create)
        .await
        .unwrap();
    assert_eq!(fx.props(&empty).await.unwrap(), Some(BTreeMap::new()));
    let listed = fx.bags(PropBagKind::Alert, Some(&hub1())).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|(b, p)| (b.clone(), p.len()))
            .collect::<Vec<_>>(),
        vec![(alert.clone(), 1), (empty.clone(), 0)]
    );
    assert!(fx.delete_bag(&empty).await.unwrap());
    assert!(!fx.delete_bag(&empty).await.unwrap());
    assert_eq!(fx.props(&empty).await.unwrap(), None);

    // Server-wide bags are apart from hub bags.
    fx.write_props(
        &PropBag::HubServer,
        &changes(&[("HTTP_Port", Some(json!(4340)))]),
        PropWrite::Merge,
    )
    .await
    .unwrap();
    assert_eq!(fx.bags(PropBagKind::Alert, None).await.unwrap().len(), 1);
    assert_eq!(
        fx.bags(PropBagKind::HubServer, None).await.unwrap().len(),
        1
    );

    // Deleting the hub deletes its bags, and only those.
    fx.delete_hub(&hub1()).await.unwrap();
    assert_eq!(fx.props(&alert).await.unwrap(), None);
    assert!(fx.props(&PropBag::HubServer).await.unwrap().is_some());
}

async fn a_deleted_user_takes_its_props_along(fx: Fixture) {
    with_definitions(&fx).await;
    let user = UserRecord {
        name: "ann".into(),
        level: AccessLevel::ReadOnly,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$salt$ann".into(),
        created: Utc::now().trunc_subsecs(6),
        creator: "admin".into(),
    };
    fx.create_user(&user).await.unwrap();
    let on_hub = PropBag::HubUser(hub1(), "ann".into());
    fx.write_props(
        &on_hub,
        &changes(&[("Access_Level", Some(json!("ReadWrite")))]),
        PropWrite::Merge,
    )
    .await
    .unwrap();
    fx.write_props(
        &PropBag::User("ann".into()),
        &changes(&[("Email", Some(json!("a@x")))]),
        PropWrite::Merge,
    )
    .await
    .unwrap();
    fx.delete_user("ann").await.unwrap();
    // A new user of the same name does not inherit the old one's level on the hub.
    fx.create_user(&user).await.unwrap();
    assert_eq!(fx.props(&on_hub).await.unwrap(), None);
    assert_eq!(fx.props(&PropBag::User("ann".into())).await.unwrap(), None);
}

async fn racing_creates_of_one_bag_let_one_win(fx: Fixture) {
    let other = fx.reopen().await.unwrap();
    let mut handles = Vec::new();
    for i in 0..8 {
        let repo = if i % 2 == 0 {
            fx.handle.clone()
        } else {
            other.clone()
        };
        handles.push(tokio::spawn(async move {
            repo.write_props(
                &PropBag::User("bob".into()),
                &[("n".to_owned(), Some(serde_json::json!(i)))]
                    .into_iter()
                    .collect(),
                PropWrite::Create,
            )
            .await
        }));
    }
    let mut won = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(e.kind(), RepoErrorKind::Conflict, "{e}"),
        }
    }
    assert_eq!(won, 1);
}

on_both_backends!(
    bags_are_created_merged_replaced_and_deleted,
    a_deleted_user_takes_its_props_along,
    racing_creates_of_one_bag_let_one_win,
);
