//! The tests of `capabilities.rs`, run again with every plugin in a child process of its own
//! ([`tests::isolates_everything`]): the same assertions hold in both modes.

#[path = "capabilities.rs"]
mod capabilities;

#[test]
fn every_plugin_of_this_binary_runs_in_a_process_of_its_own() {
    assert!(tests::isolates_everything());
    let dir = tests::PluginDir::with_examples(&["echo"]);
    let host = dir.load_ok();
    let echo = tests::info(&host, "echo");
    assert_eq!(echo.isolation, loader::Isolation::Process);
    assert!(echo.process_id.is_some());
}
