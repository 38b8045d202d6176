//! The tests of `api11.rs` (caller identity, cancellation, timers), run again with every plugin
//! in a child process of its own ([`tests::isolates_everything`]): the caller and the
//! cancellation travel over the worker's pipes, timers stay in the host.

#[path = "api11.rs"]
mod api11;

#[test]
fn every_plugin_of_this_binary_runs_in_a_process_of_its_own() {
    tests::assert_isolated_binary();
}
