//! counter in the in-process test harness.
use loader::testing::Harness;

#[test]
fn increment_persists_the_total_in_scoped_storage() {
    let h = Harness::new(plugin_api::static_plugin!(counter::Counter)).unwrap();
    assert_eq!(h.execute_json("increment", "{}").unwrap()["value"], 1);
    assert_eq!(
        h.execute_json("increment", r#"{"by":4}"#).unwrap()["value"],
        5
    );
    assert_eq!(h.stored::<u64>("total").unwrap(), Some(5));
    let now = h.execute_json("get", "{}").unwrap();
    assert_eq!(now["value"], 5);
    assert_eq!(now["session"], 2);
}
