//! The trait a plugin author implements.

use crate::{
    context::Context,
    error::{ErrorKind, PluginError, PluginResult},
    manifest::Manifest,
    payload::Payload,
    register::Registrar,
    types::{CommandRequest, Event, HookOutcome, Message, MiddlewareAction},
};

/// A native plugin.
///
/// Implement [`Plugin::manifest`] and the handlers you need, derive or implement `Default`
/// (the host creates the instance with it), and call [`export_plugin!`](crate::export_plugin)
/// once. Every handler runs on the plugin's own dispatcher thread, one call at a time, so
/// `&mut self` needs no locking; a panic in any handler is caught at the boundary and
/// reported as [`ErrorKind::Panicked`].
///
/// # Lifecycle of a plugin
/// 1. The host reads [`Plugin::manifest`] without creating the plugin, and checks versions,
///    dependencies and capabilities.
/// 2. It creates the instance with `Default` and calls [`Plugin::activate`]; if that fails, the
///    plugin stays inactive and nothing it declared is registered.
/// 3. While active it receives commands, events, messages, hook runs, middleware calls and
///    provider calls for what its manifest declares.
/// 4. On hot reload the old instance's [`Plugin::save_state`] goes to the new instance's
///    [`Plugin::restore_state`].
/// 5. [`Plugin::deactivate`] is called last; the plugin must stop any thread it started (its
///    timers, [`Context::every`], stop by themselves, and a call still running reads as
///    cancelled, [`Context::is_cancelled`]). Its library is never unloaded.
///
/// What an instance registered at run time ([`Context::register_command`] and its siblings)
/// ends with that instance: deactivation removes it, and the instance a reload or a restart
/// makes starts with none (register again in [`Plugin::activate`]).
///
/// # Examples
///
/// ```
/// use plugin_api::prelude::*;
///
/// #[derive(Default)]
/// struct Hello;
///
/// impl Plugin for Hello {
///     fn manifest() -> Manifest {
///         Manifest::new("hello").command("hi")
///     }
///     fn handle_command(&mut self, _: &Context, _: &str, args: &Payload) -> PluginResult<Payload> {
///         args.reply_with("hello, world")
///     }
/// }
/// export_plugin!(Hello);
/// # fn main() {}
/// ```
pub trait Plugin: Send + 'static {
    /// What the plugin is and declares. Called before activation, possibly more than once.
    fn manifest() -> Manifest
    where
        Self: Sized;

    /// Registers the plugin's handlers, each named once (added in 1.1). What is registered here
    /// is added to [`Plugin::manifest`]'s declarations and dispatched before the string-based
    /// methods below, which still serve whatever is not registered. See [`Registrar`].
    fn register(_api: &mut Registrar<Self>)
    where
        Self: Sized,
    {
    }

    /// Called once before any other handler.
    ///
    /// # Errors
    /// An error keeps the plugin inactive; the host reports it with the plugin's name.
    fn activate(&mut self, _ctx: &Context) -> PluginResult<()> {
        Ok(())
    }

    /// Called once when the plugin stops (host shutdown, removal, reload, quarantine).
    ///
    /// # Errors
    /// Reported and logged; the plugin is stopped anyway.
    fn deactivate(&mut self, _ctx: &Context) -> PluginResult<()> {
        Ok(())
    }

    /// Serves one of the commands declared in the manifest; `command` is the short name.
    ///
    /// # Errors
    /// Whatever the command wants its caller to see.
    fn handle_command(
        &mut self,
        _ctx: &Context,
        command: &str,
        _args: &Payload,
    ) -> PluginResult<Payload> {
        Err(PluginError::not_found(format!(
            "command not found: {command} (the plugin declares it but does not handle it)"
        )))
    }

    /// Receives an event matching one of the plugin's subscriptions. The returned payload is what
    /// `emit_and_collect` callers see.
    ///
    /// # Errors
    /// Reported to `emit_and_collect` callers and logged with the plugin's name.
    fn on_event(&mut self, _ctx: &Context, _event: &Event) -> PluginResult<Option<Payload>> {
        Ok(None)
    }

    /// Receives a direct message; `Some` is the reply when the sender waits for one.
    ///
    /// # Errors
    /// Returned to a waiting sender.
    fn on_message(&mut self, _ctx: &Context, message: &Message) -> PluginResult<Option<Payload>> {
        Err(PluginError::new(
            ErrorKind::Unsupported,
            format!("plugin does not accept messages (from {})", message.from),
        ))
    }

    /// Serves an RPC call.
    ///
    /// # Errors
    /// Returned to the caller; by default "method not found".
    fn on_call(&mut self, _ctx: &Context, method: &str, _args: &Payload) -> PluginResult<Payload> {
        Err(PluginError::not_found(format!(
            "method not found: {method}"
        )))
    }

    /// Handles a run of hook `hook`: return the (possibly modified) data, or veto it.
    ///
    /// # Errors
    /// By the host's hook policy, an error fails the whole run, naming this plugin.
    fn on_hook(
        &mut self,
        _ctx: &Context,
        _hook: &str,
        data: &Payload,
    ) -> PluginResult<HookOutcome> {
        Ok(HookOutcome::Continue(data.clone()))
    }

    /// Middleware before a command runs: go on (possibly with a changed request) or answer now.
    ///
    /// # Errors
    /// Fails the command with an error naming this middleware.
    fn before_command(
        &mut self,
        _ctx: &Context,
        request: &CommandRequest,
    ) -> PluginResult<MiddlewareAction> {
        Ok(MiddlewareAction::Continue(request.clone()))
    }

    /// Middleware after a command ran: inspect and possibly change its result.
    ///
    /// # Errors
    /// Becomes the command's result.
    fn after_command(
        &mut self,
        _ctx: &Context,
        _request: &CommandRequest,
        result: PluginResult<Payload>,
    ) -> PluginResult<Payload> {
        result
    }

    /// Serves `method` of one of the providers declared in the manifest.
    ///
    /// # Errors
    /// Returned to the caller; by default "method not found".
    fn provide(
        &mut self,
        _ctx: &Context,
        provider: &str,
        method: &str,
        _args: &Payload,
    ) -> PluginResult<Payload> {
        Err(PluginError::not_found(format!(
            "provider {provider} has no method {method}"
        )))
    }

    /// Hands in-memory state to the next instance on hot reload. `None`: the new one starts fresh.
    ///
    /// # Errors
    /// The reload goes on and the new instance starts fresh; the error is logged.
    fn save_state(&mut self, _ctx: &Context) -> PluginResult<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Receives the state saved by the previous instance (of version `from_version`), before
    /// [`Plugin::activate`].
    ///
    /// # Errors
    /// The instance starts fresh; the error is logged.
    fn restore_state(
        &mut self,
        _ctx: &Context,
        _state: &[u8],
        _from_version: &str,
    ) -> PluginResult<()> {
        Ok(())
    }
}
