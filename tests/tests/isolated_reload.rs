//! The tests of `reload.rs`, run again with every plugin in a child process of its own
//! ([`tests::isolates_everything`]): the same assertions hold in both modes.

#[path = "reload.rs"]
mod reload;
