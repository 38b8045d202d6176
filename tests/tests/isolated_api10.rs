//! The tests of `api10.rs` run again with every plugin in a child process of its own
//! ([`tests::isolates_everything`]): a plugin built against plugin-api 1.0.0 works isolated too.

#[path = "api10.rs"]
mod api10;

#[test]
fn every_plugin_of_this_binary_runs_in_a_process_of_its_own() {
    tests::assert_isolated_binary();
}
