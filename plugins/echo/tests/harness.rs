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
