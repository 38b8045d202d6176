//! Typed registration (added in 1.1): a plugin names each command, RPC method, provider method,
//! hook and event handler once, with its handler, and plugin-api derives both the manifest
//! entries and the dispatch from that one list.
//!
//! Registration is an alternative to overriding the string-based [`Plugin`] methods
//! (`handle_command`, `on_call`, `provide`, `on_hook`, `on_event`, `on_message`); the two mix.
//! A call is dispatched to a registered handler when one matches, and to the string-based
//! method otherwise, whose default answers "not found". So a plugin that registers everything
//! never writes a fallback of its own.

use std::{any::TypeId, collections::HashMap};

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize};

use crate::{
    context::Context,
    error::{PluginError, PluginResult},
    manifest::{CommandDecl, HookDecl, Manifest, MethodDecl, ProviderDecl},
    payload::Payload,
    plugin::Plugin,
    types::{Event, HookOutcome, Message},
};

/// A handler working on encoded payloads: the form every typed handler is stored in.
type Raw<P> = Box<dyn Fn(&mut P, &Context, &Payload) -> PluginResult<Payload> + Send + Sync>;
type HookFn<P> = Box<dyn Fn(&mut P, &Context, &Payload) -> PluginResult<HookOutcome> + Send + Sync>;
type EventFn<P> =
    Box<dyn Fn(&mut P, &Context, &Event) -> PluginResult<Option<Payload>> + Send + Sync>;
type MessageFn<P> =
    Box<dyn Fn(&mut P, &Context, &Message) -> PluginResult<Option<Payload>> + Send + Sync>;

/// The argument type of a handler that takes no arguments: whatever the caller sends (nothing,
/// `{}`, `null`, any bincode) is accepted and ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoArgs;

impl<'de> Deserialize<'de> for NoArgs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_ignored_any(serde::de::IgnoredAny)
            .map(|_| NoArgs)
    }
}

/// Wraps a typed handler: decode the arguments (naming `what` when they do not fit), run it,
/// and encode the answer in the caller's codec.
fn typed<P, A, R, F>(what: String, handler: F) -> Raw<P>
where
    A: DeserializeOwned + 'static,
    R: Serialize,
    F: Fn(&mut P, &Context, A) -> PluginResult<R> + Send + Sync + 'static,
{
    // `NoArgs` never looks at the bytes (bincode cannot skip a value it has no type for).
    let ignore = TypeId::of::<A>() == TypeId::of::<NoArgs>();
    Box::new(move |plugin, ctx, args| {
        let source = if ignore { &Payload::empty() } else { args };
        let decoded: A = source.decode().map_err(|e| {
            PluginError::new(
                e.kind,
                format!("{what}: arguments do not fit: {}", e.message()),
            )
        })?;
        let answer = handler(plugin, ctx, decoded)?;
        args.reply_with(&answer)
    })
}

/// Where a plugin registers its handlers; passed to [`Plugin::register`].
///
/// # Examples
///
/// ```
/// use plugin_api::prelude::*;
///
/// #[derive(Default)]
/// struct Hello;
///
/// impl Hello {
///     fn greet(&mut self, _: &Context, name: String) -> PluginResult<String> {
///         Ok(format!("hello, {name}"))
///     }
/// }
///
/// impl Plugin for Hello {
///     fn manifest() -> Manifest {
///         Manifest::new("hello")
///     }
///     fn register(api: &mut Registrar<Self>) {
///         api.command("greet", "greets {name}", Self::greet);
///     }
/// }
/// export_plugin!(Hello);
/// # fn main() {}
/// ```
pub struct Registrar<P> {
    declared: Declared,
    table: Table<P>,
}

/// What registration adds to the manifest.
#[derive(Default)]
struct Declared {
    commands: Vec<CommandDecl>,
    rpc: Vec<MethodDecl>,
    providers: Vec<ProviderDecl>,
    hooks: Vec<HookDecl>,
    subscriptions: Vec<String>,
    messages: bool,
}

/// The handlers, by what they answer.
pub(crate) struct Table<P> {
    commands: HashMap<String, Raw<P>>,
    rpc: HashMap<String, Raw<P>>,
    /// By provider, then method (looked up without building a key).
    methods: HashMap<String, HashMap<String, Raw<P>>>,
    hooks: HashMap<String, HookFn<P>>,
    /// In registration order: the first matching pattern handles an event.
    events: Vec<(String, EventFn<P>)>,
    message: Option<MessageFn<P>>,
}

impl<P> Default for Table<P> {
    fn default() -> Self {
        Table {
            commands: HashMap::new(),
            rpc: HashMap::new(),
            methods: HashMap::new(),
            hooks: HashMap::new(),
            events: Vec::new(),
            message: None,
        }
    }
}

impl<P: Plugin> Registrar<P> {
    /// The registrations of plugin type `P` (runs [`Plugin::register`]).
    pub(crate) fn of() -> Registrar<P> {
        let mut api = Registrar {
            declared: Declared::default(),
            table: Table::default(),
        };
        P::register(&mut api);
        api
    }

    /// `manifest` with everything registered added to it (each name once).
    pub(crate) fn extend(&self, mut manifest: Manifest) -> Manifest {
        let d = &self.declared;
        for c in &d.commands {
            if !manifest.commands.iter().any(|m| m.name == c.name) {
                manifest.commands.push(c.clone());
            }
        }
        for m in &d.rpc {
            if !manifest.rpc.iter().any(|r| r.name == m.name) {
                manifest.rpc.push(m.clone());
            }
        }
        for p in &d.providers {
            match manifest.providers.iter_mut().find(|q| q.name == p.name) {
                Some(q) => {
                    for m in &p.methods {
                        if !q.methods.iter().any(|n| n.name == m.name) {
                            q.methods.push(m.clone());
                        }
                    }
                }
                None => manifest.providers.push(p.clone()),
            }
        }
        for h in &d.hooks {
            if !manifest.hooks.iter().any(|g| g.name == h.name) {
                manifest.hooks.push(h.clone());
            }
        }
        for s in &d.subscriptions {
            if !manifest.subscribes.contains(s) {
                manifest.subscribes.push(s.clone());
            }
        }
        if d.messages || !d.rpc.is_empty() {
            manifest.accepts_messages = true;
        }
        manifest
    }

    /// The dispatch table, for an instance.
    pub(crate) fn into_table(self) -> Table<P> {
        self.table
    }

    /// Registers command `name` (the short name; callers use `<plugin>:<name>`), its help text,
    /// and its handler. The arguments are decoded into `A` (an error names the command), and
    /// the answer is encoded in the caller's codec. Take [`NoArgs`] for a command without
    /// arguments.
    pub fn command<A, R, F>(&mut self, name: &str, help: &str, handler: F) -> &mut Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize,
        F: Fn(&mut P, &Context, A) -> PluginResult<R> + Send + Sync + 'static,
    {
        self.declared.commands.push(CommandDecl {
            name: name.to_owned(),
            description: help.to_owned(),
        });
        let what = format!("command {name}");
        self.table
            .commands
            .insert(name.to_owned(), typed(what, handler));
        self
    }

    /// Registers RPC method `method` (called with `ctx.call(plugin, method, args)`). Registering
    /// any method makes the plugin accept messages.
    pub fn rpc<A, R, F>(&mut self, method: &str, help: &str, handler: F) -> &mut Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize,
        F: Fn(&mut P, &Context, A) -> PluginResult<R> + Send + Sync + 'static,
    {
        self.declared.rpc.push(MethodDecl::new(method, help));
        let what = format!("method {method}");
        self.table
            .rpc
            .insert(method.to_owned(), typed(what, handler));
        self
    }

    /// As [`Registrar::command`], for a handler that reads and answers encoded payloads itself
    /// (it takes any codec, or several shapes of argument).
    pub fn command_raw<F>(&mut self, name: &str, help: &str, handler: F) -> &mut Self
    where
        F: Fn(&mut P, &Context, &Payload) -> PluginResult<Payload> + Send + Sync + 'static,
    {
        self.declared.commands.push(CommandDecl {
            name: name.to_owned(),
            description: help.to_owned(),
        });
        self.table
            .commands
            .insert(name.to_owned(), Box::new(handler));
        self
    }

    /// As [`Registrar::rpc`], for a handler that reads and answers encoded payloads itself.
    pub fn rpc_raw<F>(&mut self, method: &str, help: &str, handler: F) -> &mut Self
    where
        F: Fn(&mut P, &Context, &Payload) -> PluginResult<Payload> + Send + Sync + 'static,
    {
        self.declared.rpc.push(MethodDecl::new(method, help));
        self.table.rpc.insert(method.to_owned(), Box::new(handler));
        self
    }

    /// Declares provider `name` at `priority`; add its methods on what this returns.
    pub fn provider(&mut self, name: &str, priority: i32) -> ProviderRegistrar<'_, P> {
        if !self.declared.providers.iter().any(|p| p.name == name) {
            self.declared.providers.push(ProviderDecl {
                name: name.to_owned(),
                priority,
                methods: Vec::new(),
            });
        }
        ProviderRegistrar {
            api: self,
            provider: name.to_owned(),
        }
    }

    /// Registers this plugin's handler for hook `name`, at `priority` (lower runs first).
    pub fn hook<F>(&mut self, name: &str, priority: i32, handler: F) -> &mut Self
    where
        F: Fn(&mut P, &Context, &Payload) -> PluginResult<HookOutcome> + Send + Sync + 'static,
    {
        self.declared.hooks.push(HookDecl {
            name: name.to_owned(),
            priority,
        });
        self.table.hooks.insert(name.to_owned(), Box::new(handler));
        self
    }

    /// Subscribes to `pattern` (`type`, `prefix:*` or `*`) with `handler`. When several
    /// registered patterns match an event, the first registered handles it.
    pub fn on_event<F>(&mut self, pattern: &str, handler: F) -> &mut Self
    where
        F: Fn(&mut P, &Context, &Event) -> PluginResult<Option<Payload>> + Send + Sync + 'static,
    {
        self.declared.subscriptions.push(pattern.to_owned());
        self.table
            .events
            .push((pattern.to_owned(), Box::new(handler)));
        self
    }

    /// Accepts direct messages with `handler` (`Some` is the reply to a waiting sender).
    pub fn on_message<F>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(&mut P, &Context, &Message) -> PluginResult<Option<Payload>> + Send + Sync + 'static,
    {
        self.declared.messages = true;
        self.table.message = Some(Box::new(handler));
        self
    }
}

/// Adds methods to one provider; returned by [`Registrar::provider`].
pub struct ProviderRegistrar<'a, P> {
    api: &'a mut Registrar<P>,
    provider: String,
}

impl<P> ProviderRegistrar<'_, P> {
    /// Registers method `method` of this provider, its help text and its handler (arguments
    /// and answer as for [`Registrar::command`]).
    pub fn method<A, R, F>(&mut self, method: &str, help: &str, handler: F) -> &mut Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize,
        F: Fn(&mut P, &Context, A) -> PluginResult<R> + Send + Sync + 'static,
    {
        if let Some(p) = self
            .api
            .declared
            .providers
            .iter_mut()
            .find(|p| p.name == self.provider)
        {
            p.methods.push(MethodDecl::new(method, help));
        }
        let what = format!("provider {} method {method}", self.provider);
        self.api
            .table
            .methods
            .entry(self.provider.clone())
            .or_default()
            .insert(method.to_owned(), typed(what, handler));
        self
    }
}

/// `P`'s manifest with everything it registers in [`Plugin::register`] added: what the host
/// reads (less the version and description that `export_plugin!` fills in from the crate).
/// Useful in a plugin's unit tests.
pub fn manifest_of<P: Plugin>() -> Manifest {
    Registrar::<P>::of().extend(P::manifest())
}

/// Whether event type `event_type` matches subscription `pattern` (`*`, `prefix:*`, exact).
fn matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

impl<P> Table<P> {
    /// The registered command handler's answer, or `None` when `command` is not registered.
    pub(crate) fn command(
        &self,
        plugin: &mut P,
        ctx: &Context,
        command: &str,
        args: &Payload,
    ) -> Option<PluginResult<Payload>> {
        self.commands
            .get(command)
            .map(|handler| handler(plugin, ctx, args))
    }

    /// As [`Table::command`], for an RPC method.
    pub(crate) fn rpc(
        &self,
        plugin: &mut P,
        ctx: &Context,
        method: &str,
        args: &Payload,
    ) -> Option<PluginResult<Payload>> {
        self.rpc
            .get(method)
            .map(|handler| handler(plugin, ctx, args))
    }

    /// As [`Table::command`], for a provider's method.
    pub(crate) fn provide(
        &self,
        plugin: &mut P,
        ctx: &Context,
        (provider, method): (&str, &str),
        args: &Payload,
    ) -> Option<PluginResult<Payload>> {
        self.methods
            .get(provider)
            .and_then(|methods| methods.get(method))
            .map(|handler| handler(plugin, ctx, args))
    }

    /// As [`Table::command`], for a hook.
    pub(crate) fn hook(
        &self,
        plugin: &mut P,
        ctx: &Context,
        hook: &str,
        data: &Payload,
    ) -> Option<PluginResult<HookOutcome>> {
        self.hooks
            .get(hook)
            .map(|handler| handler(plugin, ctx, data))
    }

    /// The first registered event handler whose pattern matches, or `None`.
    pub(crate) fn event(
        &self,
        plugin: &mut P,
        ctx: &Context,
        event: &Event,
    ) -> Option<PluginResult<Option<Payload>>> {
        self.events
            .iter()
            .find(|(pattern, _)| matches(pattern, &event.event_type))
            .map(|(_, handler)| handler(plugin, ctx, event))
    }

    /// The registered message handler's answer, or `None`.
    pub(crate) fn message(
        &self,
        plugin: &mut P,
        ctx: &Context,
        message: &Message,
    ) -> Option<PluginResult<Option<Payload>>> {
        self.message
            .as_ref()
            .map(|handler| handler(plugin, ctx, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_the_hosts() {
        assert!(matches("*", "a:b"));
        assert!(matches("data:*", "data:x"));
        assert!(!matches("data:*", "database"));
        assert!(matches("a:b", "a:b"));
        assert!(!matches("a:b", "a:bc"));
    }
}
