//! Pure decisions over manifests: no I/O, no threads, no host state.
//!
//! 1. [`admit`]: which proposed plugins may run, in which order, and why the others may not
//!    (load, reload and doctor all ask it).
//! 2. [`resolve`]: activation order by dependencies, and cycles.
//! 3. [`capability`]: capability and event patterns, and what a grant allows.
pub(crate) mod admit;
pub(crate) mod capability;
pub(crate) mod resolve;
