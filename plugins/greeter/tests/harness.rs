//! greeter in the in-process test harness.
use loader::testing::Harness;

#[test]
fn greet_answers_in_the_callers_codec_and_announces_the_greeting() {
    let h = Harness::new(plugin_api::static_plugin!(greeter::Greeter)).unwrap();
    let json = h.execute_json("greet", r#"{"name":"Ada"}"#).unwrap();
    assert_eq!(json["message"], "Hello, Ada!");
    let typed: greeter::Greeting = h
        .execute("greet", &greeter::Greet { name: "Bob".into() })
        .unwrap();
    assert_eq!(typed.message, "Hello, Bob!");
    let event = h.wait_for_event("greeter:greeted").unwrap();
    assert_eq!(event.source.as_str(), "greeter");
    let greeted: greeter::Greeted = event.data.decode().unwrap();
    assert_eq!(greeted.name, "Ada");
}

#[test]
fn an_empty_name_is_refused() {
    let h = Harness::new(plugin_api::static_plugin!(greeter::Greeter)).unwrap();
    let err = h.execute_json("greet", r#"{"name":""}"#).unwrap_err();
    assert!(err.message().contains("non-empty"), "{err}");
}

#[test]
fn greet_user_without_a_users_provider_names_the_provider() {
    let h = Harness::new(plugin_api::static_plugin!(greeter::Greeter)).unwrap();
    let err = h.execute_json("greet-user", r#"{"id":1}"#).unwrap_err();
    assert_eq!(err.kind, plugin_api::ErrorKind::NotFound);
    assert!(err.message().contains("users"), "{err}");
}
