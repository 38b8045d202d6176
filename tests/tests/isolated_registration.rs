//! The tests of `registration.rs`, run again with every plugin in a child process of its own
//! ([`tests::isolates_everything`]): the same assertions hold in both modes.

#[path = "registration.rs"]
mod registration;

#[test]
fn every_plugin_of_this_binary_runs_in_a_process_of_its_own() {
    tests::assert_isolated_binary();
}
