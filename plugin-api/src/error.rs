//! The error that crosses the boundary.

use std::fmt;

use abi_stable::{std_types::RString, StableAbi};

/// What went wrong, as a stable tag that host and plugin agree on.
#[repr(u8)]
#[derive(
    StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum ErrorKind {
    /// The handler reported a failure of its own.
    Failed = 0,
    /// Plugin code panicked; the panic was caught at the boundary.
    Panicked = 1,
    /// No command, plugin, provider, method or hook of that name.
    NotFound = 2,
    /// The caller lacks the capability the operation needs.
    PermissionDenied = 3,
    /// No answer before the deadline.
    Timeout = 4,
    /// The target was deactivated or reloaded away while the call waited.
    Cancelled = 5,
    /// The target's queue is full.
    QueueFull = 6,
    /// Bytes did not decode, or a value did not encode.
    Codec = 7,
    /// A hook handler refused the data.
    Vetoed = 8,
    /// The call would wait on itself (A calls B calls A).
    Cycle = 9,
    /// The input is malformed (bad key, bad name, oversized payload).
    InvalidInput = 10,
    /// A storage write would exceed the plugin's quota.
    QuotaExceeded = 11,
    /// The storage backend failed.
    Storage = 12,
    /// The operation is not supported by this plugin or host.
    Unsupported = 13,
}

impl ErrorKind {
    /// A short lower-case name for the kind.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Failed => "failed",
            ErrorKind::Panicked => "panicked",
            ErrorKind::NotFound => "not found",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::QueueFull => "queue full",
            ErrorKind::Codec => "codec",
            ErrorKind::Vetoed => "vetoed",
            ErrorKind::Cycle => "call cycle",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::QuotaExceeded => "quota exceeded",
            ErrorKind::Storage => "storage",
            ErrorKind::Unsupported => "unsupported",
        }
    }
}

/// An error that crosses the native boundary: a stable kind plus a human-readable message.
///
/// The message is complete on its own (it names the command, plugin or capability), so hosts
/// print it as it is.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginError {
    /// The category of the failure.
    pub kind: ErrorKind,
    /// What happened, naming the thing involved.
    pub message: RString,
}

/// The result type of every plugin-facing operation.
pub type PluginResult<T> = Result<T, PluginError>;

impl PluginError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            kind,
            message: RString::from(message.into()),
        }
    }

    /// A handler failure ([`ErrorKind::Failed`]).
    pub fn failed(message: impl Into<String>) -> Self {
        PluginError::new(ErrorKind::Failed, message)
    }

    /// Something named does not exist ([`ErrorKind::NotFound`]).
    pub fn not_found(message: impl Into<String>) -> Self {
        PluginError::new(ErrorKind::NotFound, message)
    }

    /// Malformed input ([`ErrorKind::InvalidInput`]).
    pub fn invalid(message: impl Into<String>) -> Self {
        PluginError::new(ErrorKind::InvalidInput, message)
    }

    /// The message text.
    pub fn message(&self) -> &str {
        self.message.as_str()
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}
