//! Registration at run time (added in 1.1): commands, hooks and providers a plugin adds while it
//! runs, within name patterns its manifest declares, each held by a [`Registration`] handle.
//!
//! The host keeps the routes (and refuses names outside the patterns, or that collide); this
//! side keeps the handlers, in a table of the instance's [`Context`] that the export glue
//! consults after the handlers of [`Plugin::register`](crate::Plugin::register). Handlers run on
//! the plugin's own thread, like every other handler.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
};

use abi_stable::std_types::RStr;
use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{
    abi::HostContextBox,
    context::Context,
    error::{PluginError, PluginResult},
    manifest::{CommandDecl, HookDecl, MethodDecl, ProviderDecl},
    payload::Payload,
    types::HookOutcome,
};

/// A handler working on encoded payloads.
pub(crate) type RawFn = Arc<dyn Fn(&Context, &Payload) -> PluginResult<Payload> + Send + Sync>;
/// A hook handler.
pub(crate) type HookFn = Arc<dyn Fn(&Context, &Payload) -> PluginResult<HookOutcome> + Send + Sync>;

/// A provider's methods by name.
type Methods = HashMap<String, RawFn>;

/// What can be registered at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationKind {
    /// A command, `<plugin>:<name>`.
    Command,
    /// A hook handler.
    Hook,
    /// A provider.
    Provider,
}

impl std::fmt::Display for RegistrationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RegistrationKind::Command => "command",
            RegistrationKind::Hook => "hook",
            RegistrationKind::Provider => "provider",
        })
    }
}

/// What a plugin asks the host to route to it at run time; crosses the boundary as JSON (added
/// in 1.1), so later versions may add fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RegistrationDecl {
    /// A command with its help text.
    Command(CommandDecl),
    /// A hook handler with its priority.
    Hook(HookDecl),
    /// A provider with its priority and methods.
    Provider(ProviderDecl),
}

impl RegistrationDecl {
    /// Its kind.
    pub fn kind(&self) -> RegistrationKind {
        match self {
            RegistrationDecl::Command(_) => RegistrationKind::Command,
            RegistrationDecl::Hook(_) => RegistrationKind::Hook,
            RegistrationDecl::Provider(_) => RegistrationKind::Provider,
        }
    }

    /// The registered name (command short name, hook name or provider name).
    pub fn name(&self) -> &str {
        match self {
            RegistrationDecl::Command(c) => &c.name,
            RegistrationDecl::Hook(h) => &h.name,
            RegistrationDecl::Provider(p) => &p.name,
        }
    }
}

/// One instance's run-time handlers, by kind and name, each with the id of the registration
/// that holds it (so that a stale handle never removes a newer registration of the same name).
#[derive(Default)]
pub(crate) struct Handlers {
    /// Set when the instance starts to deactivate: it registers nothing from then on (what it
    /// registered is about to be removed with it).
    closed: std::sync::atomic::AtomicBool,
    commands: Mutex<HashMap<String, (u64, RawFn)>>,
    hooks: Mutex<HashMap<String, (u64, HookFn)>>,
    providers: Mutex<HashMap<String, (u64, Methods)>>,
}

impl Handlers {
    /// Refuses registrations from now on (the instance is deactivating).
    pub(crate) fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The handler of command `name`, if one is registered. The table's lock is not held while
    /// the handler runs, so a handler may register and dispose.
    pub(crate) fn command(&self, name: &str) -> Option<RawFn> {
        self.commands.lock().get(name).map(|(_, f)| f.clone())
    }

    /// The handler of hook `name`, if one is registered.
    pub(crate) fn hook(&self, name: &str) -> Option<HookFn> {
        self.hooks.lock().get(name).map(|(_, f)| f.clone())
    }

    /// The handler of `method` of provider `provider`: `Some(None)` when the provider is
    /// registered without that method.
    pub(crate) fn provider_method(&self, provider: &str, method: &str) -> Option<Option<RawFn>> {
        self.providers
            .lock()
            .get(provider)
            .map(|(_, methods)| methods.get(method).cloned())
    }

    fn remove(&self, kind: RegistrationKind, name: &str, id: u64) {
        fn drop_if<V>(map: &Mutex<HashMap<String, (u64, V)>>, name: &str, id: u64) {
            let mut map = map.lock();
            if map.get(name).is_some_and(|(held, _)| *held == id) {
                map.remove(name);
            }
        }
        match kind {
            RegistrationKind::Command => drop_if(&self.commands, name, id),
            RegistrationKind::Hook => drop_if(&self.hooks, name, id),
            RegistrationKind::Provider => drop_if(&self.providers, name, id),
        }
    }
}

/// A run-time registration in force. Dropping it, or calling [`Registration::dispose`],
/// unregisters it; so does the end of the plugin instance that made it (deactivation, reload,
/// restart), whether or not the handle is still held.
///
/// Keep the handles in the plugin value (a `Vec<Registration>`, say): they are `Send` and
/// dropping the plugin drops them.
#[must_use = "dropping a Registration unregisters it at once"]
pub struct Registration {
    id: u64,
    kind: RegistrationKind,
    name: String,
    host: Weak<HostContextBox>,
    handlers: Weak<Handlers>,
    disposed: bool,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish()
    }
}

impl Registration {
    /// The host's id for this registration (as `describe` shows it).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// What was registered.
    pub fn kind(&self) -> RegistrationKind {
        self.kind
    }

    /// The registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Unregisters now; calls already routed to the plugin may still find the handler gone and
    /// answer "not found".
    ///
    /// # Errors
    /// Not found when the host no longer holds the registration (the instance ended), or the
    /// host refused the call.
    pub fn dispose(mut self) -> PluginResult<()> {
        self.disposed = true;
        self.unregister()
    }

    fn unregister(&self) -> PluginResult<()> {
        if let Some(handlers) = self.handlers.upgrade() {
            handlers.remove(self.kind, &self.name, self.id);
        }
        match self.host.upgrade() {
            Some(host) => host.unregister(self.id).into_result(),
            None => Ok(()),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.disposed {
            // An instance that ended has had its registrations removed by the host already.
            let _ = self.unregister();
        }
    }
}

/// The methods of a provider registered at run time; see [`Context::register_provider`].
#[derive(Default)]
pub struct ProviderMethods {
    methods: Vec<(MethodDecl, RawFn)>,
}

impl std::fmt::Debug for ProviderMethods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.methods.iter().map(|(m, _)| &m.name))
            .finish()
    }
}

impl ProviderMethods {
    /// No methods yet.
    pub fn new() -> Self {
        ProviderMethods::default()
    }

    /// Adds method `name` with its help text; arguments are decoded into `A` and the answer
    /// encoded in the caller's codec, as for [`Context::register_command`].
    pub fn method<A, R, F>(self, name: &str, help: &str, handler: F) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize,
        F: Fn(&Context, A) -> PluginResult<R> + Send + Sync + 'static,
    {
        let what = format!("method {name}");
        self.method_raw(name, help, typed(what, handler))
    }

    /// Adds method `name` whose handler reads and answers encoded payloads itself.
    pub fn method_raw<F>(mut self, name: &str, help: &str, handler: F) -> Self
    where
        F: Fn(&Context, &Payload) -> PluginResult<Payload> + Send + Sync + 'static,
    {
        self.methods
            .push((MethodDecl::new(name, help), Arc::new(handler)));
        self
    }
}

/// Wraps a typed handler: decode (naming `what` when the arguments do not fit), run, encode
/// the answer in the caller's codec.
fn typed<A, R, F>(
    what: String,
    handler: F,
) -> impl Fn(&Context, &Payload) -> PluginResult<Payload> + Send + Sync + 'static
where
    A: DeserializeOwned + 'static,
    R: Serialize,
    F: Fn(&Context, A) -> PluginResult<R> + Send + Sync + 'static,
{
    let ignore = std::any::TypeId::of::<A>() == std::any::TypeId::of::<crate::NoArgs>();
    move |ctx: &Context, args: &Payload| {
        let source = if ignore { &Payload::empty() } else { args };
        let decoded: A = source.decode().map_err(|e| {
            PluginError::new(
                e.kind,
                format!("{what}: arguments do not fit: {}", e.message()),
            )
        })?;
        let answer = handler(ctx, decoded)?;
        args.reply_with(&answer)
    }
}

impl Context {
    /// Registers command `name` (callable as `<plugin>:<name>`) while the plugin runs (added
    /// in 1.1). `name` must match a pattern declared with
    /// [`Manifest::commands_matching`](crate::Manifest::commands_matching). The arguments are
    /// decoded into `A` and the answer is encoded in the caller's codec; take
    /// [`NoArgs`](crate::NoArgs) for a command without arguments. The handler runs on the
    /// plugin's thread; it reaches plugin state through what it captures.
    ///
    /// # Errors
    /// Permission denied when no declared pattern allows `name` (the error names the plugin,
    /// the name and the patterns); already exists when the plugin declares or registered a
    /// command of that name; cancelled when the instance has ended.
    ///
    /// # Examples
    /// ```
    /// use plugin_api::prelude::*;
    ///
    /// #[derive(Default)]
    /// struct Scripts { registered: Vec<Registration> }
    ///
    /// impl Plugin for Scripts {
    ///     fn manifest() -> Manifest { Manifest::new("scripts").commands_matching("script-*") }
    ///     fn activate(&mut self, ctx: &Context) -> PluginResult<()> {
    ///         let build = ctx.register_command("script-build", "runs the build", |_, _: NoArgs| {
    ///             Ok("built")
    ///         })?;
    ///         self.registered.push(build);
    ///         Ok(())
    ///     }
    /// }
    /// export_plugin!(Scripts);
    /// # fn main() {}
    /// ```
    pub fn register_command<A, R, F>(
        &self,
        name: &str,
        help: &str,
        handler: F,
    ) -> PluginResult<Registration>
    where
        A: DeserializeOwned + 'static,
        R: Serialize,
        F: Fn(&Context, A) -> PluginResult<R> + Send + Sync + 'static,
    {
        let what = format!("command {name}");
        self.register_command_raw(name, help, typed(what, handler))
    }

    /// As [`Context::register_command`], for a handler that reads and answers encoded payloads
    /// itself.
    ///
    /// # Errors
    /// As [`Context::register_command`].
    pub fn register_command_raw<F>(
        &self,
        name: &str,
        help: &str,
        handler: F,
    ) -> PluginResult<Registration>
    where
        F: Fn(&Context, &Payload) -> PluginResult<Payload> + Send + Sync + 'static,
    {
        let decl = RegistrationDecl::Command(CommandDecl {
            name: name.to_owned(),
            description: help.to_owned(),
        });
        let id = self.ask_host(&decl)?;
        self.dynamic
            .commands
            .lock()
            .insert(name.to_owned(), (id, Arc::new(handler)));
        Ok(self.handle(id, &decl))
    }

    /// Handles hook `name` at `priority` (lower runs first) while the plugin runs (added in
    /// 1.1). `name` must match a pattern declared with
    /// [`Manifest::hooks_matching`](crate::Manifest::hooks_matching).
    ///
    /// # Errors
    /// As [`Context::register_command`]: outside the patterns, already handled by this plugin,
    /// or the instance has ended.
    pub fn register_hook<F>(
        &self,
        name: &str,
        priority: i32,
        handler: F,
    ) -> PluginResult<Registration>
    where
        F: Fn(&Context, &Payload) -> PluginResult<HookOutcome> + Send + Sync + 'static,
    {
        let decl = RegistrationDecl::Hook(HookDecl {
            name: name.to_owned(),
            priority,
        });
        let id = self.ask_host(&decl)?;
        self.dynamic
            .hooks
            .lock()
            .insert(name.to_owned(), (id, Arc::new(handler)));
        Ok(self.handle(id, &decl))
    }

    /// Offers provider `name` at `priority` with `methods` while the plugin runs (added in
    /// 1.1). `name` must match a pattern declared with
    /// [`Manifest::providers_matching`](crate::Manifest::providers_matching). When another
    /// plugin provides the same name, the rules of declared providers apply: the higher
    /// priority serves, and an equal priority is refused naming both plugins.
    ///
    /// # Errors
    /// As [`Context::register_command`], and already exists on an equal-priority conflict.
    ///
    /// # Examples
    /// ```no_run
    /// # use plugin_api::prelude::*;
    /// # fn f(ctx: &Context) -> PluginResult<Registration> {
    /// let methods = ProviderMethods::new()
    ///     .method("get", "the value of {key}", |_, key: String| Ok(key.len()));
    /// ctx.register_provider("cache-eu", 0, methods)
    /// # }
    /// ```
    pub fn register_provider(
        &self,
        name: &str,
        priority: i32,
        methods: ProviderMethods,
    ) -> PluginResult<Registration> {
        let decl = RegistrationDecl::Provider(ProviderDecl {
            name: name.to_owned(),
            priority,
            methods: methods.methods.iter().map(|(m, _)| m.clone()).collect(),
        });
        let id = self.ask_host(&decl)?;
        let table = methods
            .methods
            .into_iter()
            .map(|(m, f)| (m.name, f))
            .collect();
        self.dynamic
            .providers
            .lock()
            .insert(name.to_owned(), (id, table));
        Ok(self.handle(id, &decl))
    }

    fn ask_host(&self, decl: &RegistrationDecl) -> PluginResult<u64> {
        if self
            .dynamic
            .closed
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(PluginError::new(
                crate::ErrorKind::Cancelled,
                format!(
                    "plugin {} is deactivating and registers nothing more ({} {})",
                    self.name(),
                    decl.kind(),
                    decl.name()
                ),
            ));
        }
        let json = serde_json::to_string(decl).map_err(|e| {
            PluginError::new(crate::ErrorKind::Codec, format!("registration encode: {e}"))
        })?;
        self.inner.register(RStr::from_str(&json)).into_result()
    }

    fn handle(&self, id: u64, decl: &RegistrationDecl) -> Registration {
        Registration {
            id,
            kind: decl.kind(),
            name: decl.name().to_owned(),
            host: Arc::downgrade(&self.inner),
            handlers: Arc::downgrade(&self.dynamic),
            disposed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_cross_as_tagged_json() {
        let decl = RegistrationDecl::Hook(HookDecl {
            name: "before:x".into(),
            priority: 3,
        });
        let json = serde_json::to_string(&decl).expect("encodes");
        assert_eq!(json, r#"{"kind":"hook","name":"before:x","priority":3}"#);
        let back: RegistrationDecl = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, decl);
        assert_eq!(back.kind().to_string(), "hook");
    }

    #[test]
    fn a_stale_handle_leaves_a_newer_handler() {
        let handlers = Handlers::default();
        let f: RawFn = Arc::new(|_, p| Ok(p.clone()));
        handlers.commands.lock().insert("a".into(), (2, f));
        handlers.remove(RegistrationKind::Command, "a", 1);
        assert!(handlers.command("a").is_some());
        handlers.remove(RegistrationKind::Command, "a", 2);
        assert!(handlers.command("a").is_none());
    }
}
