//! `call`: run a command with JSON arguments and hand back its JSON reply.

use loader::Host;

use super::parse_json;
use crate::{error::AppError, json::RawJson};

/// Runs `command` (`<plugin>:<command>`) with JSON arguments and returns its JSON reply.
///
/// # Errors
/// Malformed JSON (usage, exit 2); an unknown command, a timeout or the handler's error
/// (exit 1); a reply that is not JSON.
pub fn call(host: &Host, command: &str, args_json: &str) -> Result<RawJson, AppError> {
    let args = parse_json(args_json)?;
    let reply = host.execute(command, args)?;
    RawJson::from_payload(&reply)
}
