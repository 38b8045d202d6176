//! From a file to a checked library: nothing here starts a thread or touches host state.
//!
//! 1. [`discover`]: which files in a folder are plugin candidates.
//! 2. [`preflight`]: checks on the file and its private copy before anything is opened
//!    (regular file, permissions, complete image, allowlist digest).
//! 3. [`library`]: the shadow copy opened, abi_stable's checks, the manifest read.
//! 4. [`layout`]: a layout-mismatch refusal said in a few lines.
//! 5. [`manifest`]: the author's `manifest()` called on a reader thread, within a deadline.
pub(crate) mod discover;
pub(crate) mod layout;
pub(crate) mod library;
pub(crate) mod manifest;
pub(crate) mod preflight;
