//! One plugin's running instance: its queues, its thread, and how answers get back.
//!
//! 1. [`slot`]: the plugin's queues, state and dispatcher thread.
//! 2. [`reply`]: reply ports, one reused per calling thread.
pub(crate) mod reply;
pub(crate) mod slot;
