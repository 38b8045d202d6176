//! What a plugin declares about itself, readable before it is activated.

use serde::{Deserialize, Serialize};

/// A plugin's self-description: identity, requirements, and everything it registers or uses.
///
/// The host reads it from the library before activation (it crosses the boundary as JSON), checks
/// versions and dependencies against it, registers the declared commands, subscriptions, hooks,
/// providers and middleware when the plugin activates, and enforces the declared capabilities at
/// the context API.
///
/// # Examples
///
/// ```
/// use plugin_api::Manifest;
/// let m = Manifest::new("notes")
///     .describe("keeps notes")
///     .depends_on("validator", "^0.1")
///     .command("save")
///     .emits("document:saved")
///     .runs_hook("before:save")
///     .uses("storage:shared:read");
/// assert_eq!(m.commands[0].name, "save");
/// assert!(m.capabilities.contains(&"hook:run:before:save".to_string()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Manifest {
    /// Unique plugin name; also the namespace of its commands (`<name>:<command>`).
    pub name: String,
    /// The plugin's semver version. Empty means "the crate version", which
    /// [`export_plugin!`](crate::export_plugin) fills in from `CARGO_PKG_VERSION`.
    pub version: String,
    /// One line about what the plugin does.
    pub description: String,
    /// The plugin-api version the plugin was built against (filled in by the export macro).
    pub api_version: String,
    /// Semver requirement on the host's version (`*` accepts any host).
    pub host_requirement: String,
    /// Other plugins this one needs, activated before it.
    pub dependencies: Vec<Dependency>,
    /// Commands this plugin serves, exposed as `<name>:<command>`.
    pub commands: Vec<CommandDecl>,
    /// Event types (or patterns) this plugin emits.
    pub emits: Vec<String>,
    /// Event patterns this plugin subscribes to (`type`, `prefix:*` or `*`).
    pub subscribes: Vec<String>,
    /// Hooks this plugin handles, with their priority.
    pub hooks: Vec<HookDecl>,
    /// Providers this plugin offers, with their priority.
    pub providers: Vec<ProviderDecl>,
    /// Middleware this plugin installs around command execution.
    pub middleware: Option<MiddlewareDecl>,
    /// Whether the plugin answers direct messages and RPC calls.
    pub accepts_messages: bool,
    /// RPC methods the plugin answers, with their help text (added in 1.1; filled in from
    /// [`Registrar::rpc`](crate::Registrar::rpc)). Informational: a 1.0 plugin lists none and
    /// still answers its methods.
    pub rpc: Vec<MethodDecl>,
    /// Capabilities this plugin uses (see the crate docs for the list).
    pub capabilities: Vec<String>,
    /// Name patterns within which the plugin may register commands, hooks and providers at
    /// run time (added in 1.1; see [`Manifest::commands_matching`]). Left out of the JSON
    /// when empty; readers that predate it ignore it.
    #[serde(skip_serializing_if = "RegistrationPatterns::is_empty")]
    pub patterns: RegistrationPatterns,
}

/// Name patterns a plugin declares for what it registers at run time (added in 1.1).
///
/// A pattern is an exact name (`build`), a prefix followed by `*` (`script-*`), or `*` (any
/// name). [`Context::register_command`](crate::Context::register_command) and its siblings
/// refuse a name that no pattern of its kind matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RegistrationPatterns {
    /// Patterns of command names (short names, without the `<plugin>:` prefix).
    pub commands: Vec<String>,
    /// Patterns of hook names.
    pub hooks: Vec<String>,
    /// Patterns of provider names.
    pub providers: Vec<String>,
}

impl RegistrationPatterns {
    /// Whether no pattern of any kind is declared.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty() && self.hooks.is_empty() && self.providers.is_empty()
    }

    /// The first pattern of `kind` that allows `name`, if any.
    pub fn allowing(&self, kind: crate::RegistrationKind, name: &str) -> Option<&str> {
        self.of(kind)
            .iter()
            .find(|p| pattern_matches(p, name))
            .map(String::as_str)
    }

    /// The patterns of `kind`.
    pub fn of(&self, kind: crate::RegistrationKind) -> &[String] {
        match kind {
            crate::RegistrationKind::Command => &self.commands,
            crate::RegistrationKind::Hook => &self.hooks,
            crate::RegistrationKind::Provider => &self.providers,
        }
    }
}

/// Whether `name` matches `pattern`: exact, `prefix*`, or `*`.
fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// A dependency on another plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Dependency {
    /// The plugin name depended on.
    pub name: String,
    /// Semver requirement its version must meet (for example `^0.1`).
    pub requirement: String,
}

/// A declared command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CommandDecl {
    /// Short name, without the plugin prefix.
    pub name: String,
    /// What the command does.
    pub description: String,
}

/// A declared hook handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HookDecl {
    /// Hook name, for example `before:save`.
    pub name: String,
    /// Lower runs first; ties run in activation order.
    pub priority: i32,
}

/// A declared provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProviderDecl {
    /// Provider name, for example `users`.
    pub name: String,
    /// When two plugins provide the same name, the higher priority wins; equal priorities are
    /// refused.
    pub priority: i32,
    /// The provider's methods with their help text (added in 1.1; filled in from
    /// [`ProviderRegistrar::method`](crate::ProviderRegistrar::method)). Informational.
    pub methods: Vec<MethodDecl>,
}

/// A declared RPC or provider method (added in 1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct MethodDecl {
    /// The method's name.
    pub name: String,
    /// What it does.
    pub description: String,
}

impl MethodDecl {
    /// A method named `name` with help text `description`.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        MethodDecl {
            name: name.into(),
            description: description.into(),
        }
    }
}

/// A declared middleware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct MiddlewareDecl {
    /// Lower runs first (outermost); ties run in registration order.
    pub priority: i32,
}

impl Manifest {
    /// A manifest for plugin `name` whose version is filled in from the crate version.
    pub fn new(name: impl Into<String>) -> Self {
        Manifest {
            name: name.into(),
            host_requirement: "*".to_owned(),
            ..Manifest::default()
        }
    }

    /// Sets an explicit version (semver) instead of the crate version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Sets the description.
    pub fn describe(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Requires a host version matching `requirement` (semver).
    pub fn requires_host(mut self, requirement: impl Into<String>) -> Self {
        self.host_requirement = requirement.into();
        self
    }

    /// Depends on plugin `name` at a version matching `requirement` (semver).
    pub fn depends_on(mut self, name: impl Into<String>, requirement: impl Into<String>) -> Self {
        self.dependencies.push(Dependency {
            name: name.into(),
            requirement: requirement.into(),
        });
        self
    }

    /// Declares a command served by this plugin.
    pub fn command(self, name: impl Into<String>) -> Self {
        self.command_with_help(name, "")
    }

    /// Declares a command with a description.
    pub fn command_with_help(mut self, name: impl Into<String>, help: impl Into<String>) -> Self {
        self.commands.push(CommandDecl {
            name: name.into(),
            description: help.into(),
        });
        self
    }

    /// Declares an event type (or pattern) this plugin emits; grants `emit:<pattern>`.
    pub fn emits(mut self, pattern: impl Into<String>) -> Self {
        self.emits.push(pattern.into());
        self
    }

    /// Subscribes to an event pattern when activated; grants `subscribe:<pattern>`.
    pub fn subscribes(mut self, pattern: impl Into<String>) -> Self {
        self.subscribes.push(pattern.into());
        self
    }

    /// Handles hook `name` at `priority` (lower runs first).
    pub fn hook(mut self, name: impl Into<String>, priority: i32) -> Self {
        self.hooks.push(HookDecl {
            name: name.into(),
            priority,
        });
        self
    }

    /// Offers provider `name` at `priority`.
    pub fn provides(mut self, name: impl Into<String>, priority: i32) -> Self {
        self.providers.push(ProviderDecl {
            name: name.into(),
            priority,
            methods: Vec::new(),
        });
        self
    }

    /// Installs this plugin's middleware at `priority` (lower is outermost).
    pub fn middleware(mut self, priority: i32) -> Self {
        self.middleware = Some(MiddlewareDecl { priority });
        self
    }

    /// Declares that the plugin answers direct messages and RPC calls.
    pub fn accepts_messages(mut self) -> Self {
        self.accepts_messages = true;
        self
    }

    /// Allows the plugin to register commands whose names match `pattern` at run time, with
    /// [`Context::register_command`](crate::Context::register_command) (added in 1.1).
    ///
    /// ```
    /// use plugin_api::{Manifest, RegistrationKind};
    /// let m = Manifest::new("scripts").commands_matching("script-*");
    /// assert_eq!(m.patterns.allowing(RegistrationKind::Command, "script-build"), Some("script-*"));
    /// assert_eq!(m.patterns.allowing(RegistrationKind::Command, "deploy"), None);
    /// ```
    pub fn commands_matching(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.commands.push(pattern.into());
        self
    }

    /// Allows the plugin to handle hooks whose names match `pattern`, registered at run time
    /// with [`Context::register_hook`](crate::Context::register_hook) (added in 1.1).
    pub fn hooks_matching(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.hooks.push(pattern.into());
        self
    }

    /// Allows the plugin to offer providers whose names match `pattern`, registered at run
    /// time with [`Context::register_provider`](crate::Context::register_provider) (added in
    /// 1.1).
    pub fn providers_matching(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.providers.push(pattern.into());
        self
    }

    /// Declares capability `capability` in its typed form (added in 1.1); the same as
    /// [`Manifest::uses`] with its wire form.
    pub fn uses_capability(self, capability: &crate::Capability) -> Self {
        self.uses(capability.to_string())
    }

    /// Declares a capability the plugin uses, for example `call:greeter:*`,
    /// `message:echo`, `storage:shared:read`, `database`, `provider:users`.
    pub fn uses(mut self, capability: impl Into<String>) -> Self {
        let capability = capability.into();
        if !self.capabilities.contains(&capability) {
            self.capabilities.push(capability);
        }
        self
    }

    /// Declares that the plugin executes commands matching `pattern` (`call:<pattern>`).
    pub fn calls(self, pattern: impl AsRef<str>) -> Self {
        self.uses(format!("call:{}", pattern.as_ref()))
    }

    /// Declares that the plugin runs hook `name` (`hook:run:<name>`).
    pub fn runs_hook(self, name: impl AsRef<str>) -> Self {
        self.uses(format!("hook:run:{}", name.as_ref()))
    }

    /// Declares that the plugin sends direct messages or RPC calls to `plugin` (`message:<plugin>`).
    pub fn messages(self, plugin: impl AsRef<str>) -> Self {
        self.uses(format!("message:{}", plugin.as_ref()))
    }

    /// Declares that the plugin calls provider `name` (`provider:<name>`).
    pub fn uses_provider(self, name: impl AsRef<str>) -> Self {
        self.uses(format!("provider:{}", name.as_ref()))
    }

    /// Every capability the manifest declares, including those implied by `emits` and
    /// `subscribes`, each once, in the order first declared.
    ///
    /// ```
    /// use plugin_api::Manifest;
    /// let m = Manifest::new("p").emits("a:b").subscribes("c").uses("emit:a:b");
    /// assert_eq!(m.declared_capabilities(), ["emit:a:b", "subscribe:c"]);
    /// ```
    pub fn declared_capabilities(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        all.extend(self.emits.iter().map(|p| format!("emit:{p}")));
        all.extend(self.subscribes.iter().map(|p| format!("subscribe:{p}")));
        all.extend(self.capabilities.iter().cloned());
        if self.middleware.is_some() {
            all.push("middleware".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        all.retain(|c| seen.insert(c.clone()));
        all
    }

    /// Serializes the manifest as JSON (how it crosses the boundary).
    ///
    /// # Errors
    /// Only if serde_json fails, which it does not for this type.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Parses a manifest from JSON. Unknown fields are ignored and missing ones take their
    /// defaults, so manifests from older and newer plugins both read.
    ///
    /// # Errors
    /// serde_json's error when `text` is not a JSON object of the right shape.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}
