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

#[test]
fn provider_methods_answer_in_the_callers_codec_and_are_listed() {
    let h = Harness::new(plugin_api::static_plugin!(users::Users)).unwrap();
    let get = |args: Payload| h.host().provider_call("users", "get", args);
    let json = get(Payload::from_json_str(r#"{"id":2}"#).unwrap()).unwrap();
    assert_eq!(
        json.to_json_string().unwrap(),
        r#"{"id":2,"name":"Grace Hopper"}"#
    );
    let bincode = get(Payload::encode(&users::UserId { id: 1 }).unwrap()).unwrap();
    assert_eq!(
        bincode.decode::<users::User>().unwrap().name,
        "Ada Lovelace"
    );
    let err = h
        .host()
        .provider_call("users", "delete", Payload::empty())
        .unwrap_err();
    assert_eq!(err.kind, plugin_api::ErrorKind::NotFound);
    let m = plugin_api::manifest_of::<users::Users>();
    let methods: Vec<_> = m.providers[0]
        .methods
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(methods, ["get", "list"]);
}
