//! `AtlasClient::delete` against the fake: one attempt per call, 202 then the connection goes, 404
//! for one that is gone, 400 `STREAM_PRIVATE_LINK_IN_USE` told apart, and the observer hears of it.

use std::sync::Arc;

use crate::support::atlas::*;
use atlas_linkd::atlas::{ErrorClass, Operation};
use atlas_linkd::model::RemoteState;
use fake_atlas::{FakeAtlas, FakeConfig};

#[tokio::test]
async fn a_delete_is_accepted_and_the_listing_shows_the_connection_deleting() {
    let fake = FakeAtlas::start(FakeConfig {
        delete_ms: 60_000,
        ..sa_config()
    })
    .await
    .unwrap();
    let rec = Arc::new(Recorder::default());
    let c = client_for(&fake.base_url(), sa_credentials(), Some(rec.clone()));
    let g = group(1);
    let id = c.create(&g, &msk(1)).await.unwrap().value.id;
    c.delete(&g, &id).await.unwrap();
    // Still listed while Atlas deletes it, in a deleting state.
    let listed = c.list(&g).await.unwrap();
    assert_eq!(listed.len(), 1);
    let state = listed[0].state.as_ref().unwrap();
    assert!(
        matches!(state, RemoteState::DeleteRequested | RemoteState::Deleting),
        "{state:?}"
    );
    // A second delete is harmless: Atlas accepts it again or says it is gone.
    match c.delete(&g, &id).await {
        Ok(_) => {}
        Err(e) => assert_eq!(e.status, Some(404), "{e}"),
    }
    c.shutdown().await;
    let events = rec.events.lock().unwrap().clone();
    assert!(
        events
            .iter()
            .any(|(op, group, status)| *op == Operation::Delete
                && group.as_ref() == Some(&g)
                && status == "202"),
        "{events:?}"
    );
    assert!(fake.counters().requests_with("delete", 202) >= 1);
}

#[tokio::test]
async fn deleting_an_unknown_connection_is_a_permanent_404() {
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    let c = client(&fake, sa_credentials());
    let err = c
        .delete(&group(1), "65a1b2c3d4e5f60718293a4b")
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(404));
    assert_eq!(err.class, ErrorClass::Permanent);
    assert!(!err.is_in_use());
    c.shutdown().await;
}

#[tokio::test]
async fn a_delete_refused_as_in_use_changes_nothing_and_is_told_apart() {
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    let c = client(&fake, sa_credentials());
    let g = group(1);
    let id = c.create(&g, &msk(1)).await.unwrap().value.id;
    assert!(fake.set_in_use(g.as_str(), &id, true));
    let err = c.delete(&g, &id).await.unwrap_err();
    assert_eq!(err.status, Some(400));
    assert_eq!(err.class, ErrorClass::Permanent);
    assert!(err.is_in_use(), "{err}");
    assert_eq!(err.error_code(), Some("STREAM_PRIVATE_LINK_IN_USE"));
    // The advice says what to do.
    assert!(err.to_string().contains("stream connection"), "{err}");
    let listed = c.list(&g).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!matches!(
        listed[0].state,
        Some(RemoteState::DeleteRequested | RemoteState::Deleting)
    ));
    // Freed, it goes.
    assert!(fake.set_in_use(g.as_str(), &id, false));
    c.delete(&g, &id).await.unwrap();
    c.shutdown().await;
}
