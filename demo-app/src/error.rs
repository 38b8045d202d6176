//! The demo's error: a one-line message, the [`ErrorKind`] the shell reports, and the exit code.

use std::{error::Error as StdError, process::ExitCode};

use plugin_api::{ErrorKind, PluginError};

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The user asked for something malformed (bad JSON, unknown shell command): exit code 2,
    /// like clap's own usage errors.
    #[error("{message}")]
    Usage {
        /// The category reported by the shell.
        kind: ErrorKind,
        /// One line, complete on its own.
        message: String,
    },
    /// The operation was well-formed but failed: exit code 1.
    #[error("{message}")]
    Failed {
        /// The category reported by the shell.
        kind: ErrorKind,
        /// One line, complete on its own.
        message: String,
    },
    /// stdout or stderr was closed by its reader (`demo-app list | head -1`): not a failure, so
    /// the process ends quietly with status 0, as ripgrep and the coreutils do.
    #[error("output closed")]
    Closed,
    /// SIGINT or SIGTERM (Ctrl-C) stopped the command; the plugins were shut down. Exit code
    /// 128 plus the signal's number, as shells report it (130, 143).
    #[error("interrupted")]
    Interrupted {
        /// The exit code.
        code: u8,
    },
}

impl AppError {
    /// A usage error of `kind`.
    pub fn usage(kind: ErrorKind, message: impl Into<String>) -> Self {
        AppError::Usage {
            kind,
            message: message.into(),
        }
    }

    /// A failed operation of `kind`.
    pub fn failed(kind: ErrorKind, message: impl Into<String>) -> Self {
        AppError::Failed {
            kind,
            message: message.into(),
        }
    }

    /// A failed operation caused by `error`, with its whole `source()` chain in the message:
    /// loader errors keep the operating system's reason in their source, and "cannot read
    /// plugins" without it would leave the user guessing.
    pub fn from_error(error: &(dyn StdError + 'static)) -> Self {
        AppError::failed(ErrorKind::Failed, error_chain(error))
    }

    /// The category, as the shell reports it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AppError::Usage { kind, .. } | AppError::Failed { kind, .. } => *kind,
            AppError::Closed | AppError::Interrupted { .. } => ErrorKind::Cancelled,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            AppError::Usage { .. } => ExitCode::from(2),
            AppError::Failed { .. } => ExitCode::from(1),
            AppError::Closed => ExitCode::SUCCESS,
            AppError::Interrupted { code } => ExitCode::from(*code),
        }
    }

    /// The error as the shell prints it in JSON-lines mode:
    /// `{"error": "<message>", "kind": "<kind name>"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.to_string(), "kind": self.kind().name() })
    }
}

impl From<PluginError> for AppError {
    /// Errors from the host's dispatch are failed operations; their message already names the
    /// command, plugin or capability involved.
    fn from(error: PluginError) -> Self {
        AppError::failed(error.kind, error.message.as_str())
    }
}

impl From<std::io::Error> for AppError {
    /// A broken pipe is [`AppError::Closed`]; anything else is a failed operation.
    fn from(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            AppError::Closed
        } else {
            AppError::failed(ErrorKind::Failed, error.to_string())
        }
    }
}

/// `error` and each of its sources, joined by `": "`, skipping a source whose text the
/// previous message already ends with (some errors repeat their source).
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read plugins")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_includes_the_source() {
        let e = Outer(std::io::Error::new(std::io::ErrorKind::NotFound, "gone"));
        assert_eq!(error_chain(&e), "cannot read plugins: gone");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            AppError::usage(ErrorKind::Codec, "x").exit_code(),
            ExitCode::from(2)
        );
        let failed: AppError = PluginError::not_found("command not found: nope:x").into();
        assert_eq!(failed.exit_code(), ExitCode::from(1));
        let closed: AppError = std::io::Error::from(std::io::ErrorKind::BrokenPipe).into();
        assert!(matches!(closed, AppError::Closed));
        assert_eq!(closed.exit_code(), ExitCode::SUCCESS);
        assert_eq!(
            failed.to_json(),
            serde_json::json!({"error": "command not found: nope:x", "kind": "not found"})
        );
    }
}
