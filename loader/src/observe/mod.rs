//! What the host remembers about the work it did.
//!
//! 1. [`recorder`]: the flight recorder (a ring of call and event records) and trace rendering.
//! 2. [`metrics`]: per-plugin counters and latency summaries.
//! 3. [`deadletter`]: events and messages that could not be delivered.
//! 4. [`event`]: the lifecycle events the host publishes (`plugin:activated`, ...), typed.
//! 5. [`json`]: unknown values as `null` in the records' JSON.
pub(crate) mod deadletter;
pub(crate) mod event;
pub(crate) mod json;
pub(crate) mod metrics;
pub(crate) mod recorder;
