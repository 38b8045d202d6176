//! Pure decisions over manifests: no I/O, no threads, no host state.
//!
//! 1. [`capability`]: capability and event patterns, and what a grant allows.
//! 2. [`resolve`]: activation order by dependencies, and cycles.
pub(crate) mod capability;
pub(crate) mod resolve;
