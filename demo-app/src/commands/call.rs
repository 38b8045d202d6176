//! `call`: run a command with JSON arguments and hand back its JSON reply.

use loader::Host;
use plugin_api::{ErrorKind, PluginError};

use super::parse_json;
use crate::{error::AppError, json::RawJson, suggest};

/// Runs `command` (`<plugin>:<command>`) with JSON arguments and returns its JSON reply.
///
/// # Errors
/// Malformed JSON (usage, exit 2); an unknown command, a timeout or the handler's error
/// (exit 1); a reply that is not JSON.
pub fn call(host: &Host, command: &str, args_json: &str) -> Result<RawJson, AppError> {
    let args = parse_json(args_json)?;
    let reply = host
        .execute(command, args)
        .map_err(|e| explain_not_found(host, command, e))?;
    RawJson::from_payload(&reply)
}

/// A "command not found" with what the user most likely meant: the registered command closest
/// to the one typed, or why its plugin is not serving.
fn explain_not_found(host: &Host, command: &str, error: PluginError) -> AppError {
    if error.kind != ErrorKind::NotFound || !error.message.as_str().starts_with("command not found")
    {
        return error.into();
    }
    let plugin = command
        .split_once(':')
        .map_or(command, |(plugin, _)| plugin);
    let hint = match host.plugin(plugin) {
        Some(info) if !info.state.is_serving() => {
            Some(format!("plugin {plugin} is {}", info.state.as_str()))
        }
        _ => {
            let commands = host.commands();
            suggest::closest(command, commands.iter().map(String::as_str))
                .map(|best| format!("did you mean {best}?"))
        }
    };
    match hint {
        Some(hint) => AppError::failed(error.kind, format!("{}; {hint}", error.message)),
        None => error.into(),
    }
}
