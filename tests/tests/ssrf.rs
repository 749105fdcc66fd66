//! The SSRF guard: by default the relay refuses every non-public address — given as a literal
//! or reached through DNS — and records a permanent failure that names the address, without a
//! single byte reaching the target. `--allow-network` opens chosen networks.

use e2e::stage::Stage;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn loopback_is_refused_by_default_whether_named_or_literal() {
    let stage = Stage::new().await.unwrap();
    let (literal, _) = stage.endpoint("/literal", &["review.*"], "").await.unwrap();
    // The same receiver through a name that resolves to loopback (::1 and 127.0.0.1).
    let named_url = stage
        .receiver
        .url("/named")
        .replace("127.0.0.1", "localhost");
    let named: i64 = stage
        .db
        .query_one(
            "SELECT endpoint_id FROM webhooks.create_endpoint($1, ARRAY['review.*'])",
            &[&named_url],
        )
        .await
        .unwrap()
        .get(0);
    let _relay = stage.relay_guarded(&[]).await.unwrap();
    let event_id = stage
        .emit("review.submitted", json!({"id": 1}))
        .await
        .unwrap();

    for (endpoint, shown) in [(literal, "127.0.0.1 is 127.0.0.1"), (named, "localhost is")] {
        let attempt = stage
            .wait_for_attempts(event_id, endpoint, 1)
            .await
            .remove(0);
        let error = attempt.error.clone().unwrap();
        assert!(error.contains("blocked by the SSRF guard"), "{error}");
        assert!(error.contains(shown), "{error}");
        assert_eq!(attempt.outcome, "failed", "a blocked target is not retried");
        assert_eq!(attempt.response_status, None);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        stage.receiver.requests().is_empty(),
        "nothing reached the target"
    );
}

#[tokio::test]
async fn an_allowed_network_is_delivered_to() {
    let stage = Stage::new().await.unwrap();
    stage.endpoint("/open", &["review.*"], "").await.unwrap();
    let _relay = stage
        .relay_guarded(&["--allow-network", "10.0.0.0/8,127.0.0.1/32"])
        .await
        .unwrap();
    stage
        .emit("review.submitted", json!({"id": 1}))
        .await
        .unwrap();
    stage.receiver.wait_for(1, Duration::from_secs(20)).await;
}
