//! echo in the in-process test harness.
use loader::testing::Harness;
use plugin_api::Payload;

#[test]
fn messages_come_back_and_rpc_methods_answer() {
    let h = Harness::new(plugin_api::static_plugin!(echo::Echo)).unwrap();
    let msg = Payload::encode(&"ping").unwrap();
    assert_eq!(h.host().request("echo", msg.clone(), None).unwrap(), msg);
    let reversed = h
        .host()
        .call("echo", "reverse", Payload::encode(&"abc").unwrap(), None)
        .unwrap();
    assert_eq!(reversed.decode::<String>().unwrap(), "cba");
    let err = h
        .host()
        .call("echo", "nope", Payload::empty(), None)
        .unwrap_err();
    assert_eq!(err.kind, plugin_api::ErrorKind::NotFound);
}

#[test]
fn methods_answer_in_the_callers_codec_and_bad_arguments_name_the_method() {
    let h = Harness::new(plugin_api::static_plugin!(echo::Echo)).unwrap();
    let call = |method: &str, args: Payload| h.host().call("echo", method, args, None);
    let json = Payload::from_json_str(r#""abc""#).unwrap();
    assert_eq!(
        call("reverse", json.clone())
            .unwrap()
            .to_json_string()
            .unwrap(),
        r#""cba""#
    );
    assert_eq!(
        call("upper", json.clone())
            .unwrap()
            .to_json_string()
            .unwrap(),
        r#""ABC""#
    );
    assert_eq!(
        call("ping", json).unwrap().to_json_string().unwrap(),
        r#""pong""#
    );
    let bincode = Payload::encode("abc").unwrap();
    assert_eq!(
        call("upper", bincode).unwrap().decode::<String>().unwrap(),
        "ABC"
    );
    let pong = call("ping", Payload::empty()).unwrap();
    assert_eq!(pong.decode::<String>().unwrap(), "pong");
    let err = call("reverse", Payload::from_json_str("42").unwrap()).unwrap_err();
    assert_eq!(err.kind, plugin_api::ErrorKind::Codec);
    assert!(
        err.message()
            .starts_with("method reverse: arguments do not fit"),
        "{err}"
    );
    // The command and the method are one handler.
    assert_eq!(h.execute_json("reverse", r#""xyz""#).unwrap(), "zyx");
}

#[test]
fn the_manifest_lists_the_registered_methods_with_their_help() {
    let m = plugin_api::manifest_of::<echo::Echo>();
    let rpc: Vec<_> = m.rpc.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(rpc, ["reverse", "upper", "ping"]);
    assert!(m.accepts_messages, "registering a method accepts messages");
    assert_eq!(m.commands[0].name, "reverse");
}
