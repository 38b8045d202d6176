//! users in the in-process test harness.
use loader::testing::Harness;
use plugin_api::Payload;

#[test]
fn the_users_provider_serves_get_and_list() {
    let h = Harness::new(plugin_api::static_plugin!(users::Users)).unwrap();
    let one = h
        .host()
        .provider_call(
            "users",
            "get",
            Payload::json(&serde_json::json!({"id": 2})).unwrap(),
        )
        .unwrap();
    assert_eq!(
        one.decode::<serde_json::Value>().unwrap()["name"],
        "Grace Hopper"
    );
    let err = h
        .host()
        .provider_call(
            "users",
            "get",
            Payload::json(&serde_json::json!({"id": 7})).unwrap(),
        )
        .unwrap_err();
    assert!(err.message().contains("7"), "{err}");
    let all = h.execute_json("list", "{}").unwrap();
    assert_eq!(all["users"].as_array().map(Vec::len), Some(3));
}
