//! audit-log in the in-process test harness.
use loader::testing::Harness;
use plugin_api::Payload;

#[test]
fn recent_lists_events_newest_first_with_host_stamped_fields() {
    let h = Harness::new(plugin_api::static_plugin!(audit_log::AuditLog)).unwrap();
    h.host()
        .emit("data:changed", Payload::json(&1).unwrap())
        .unwrap();
    let last = h
        .host()
        .emit("data:changed", Payload::json(&2).unwrap())
        .unwrap();
    let mut recent = serde_json::Value::Null;
    for _ in 0..500 {
        recent = h.execute_json("recent", r#"{"limit":1}"#).unwrap();
        if recent["events"][0]["id"] == last {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let newest = &recent["events"][0];
    assert_eq!(newest["id"], last);
    assert_eq!(newest["type"], "data:changed");
    assert_eq!(newest["source"], "host");
    assert!(newest["timestamp"].as_u64().unwrap() > 0);
}

#[test]
fn middleware_records_each_command_with_caller_and_duration() {
    let h = Harness::new(plugin_api::static_plugin!(audit_log::AuditLog)).unwrap();
    h.execute_json("recent", "{}").unwrap();
    let commands = h.execute_json("commands", r#"{"limit":5}"#).unwrap();
    let first = &commands["commands"][0];
    assert_eq!(first["command"], "audit-log:recent");
    assert_eq!(first["caller"], "host");
    assert_eq!(first["ok"], true);
}
