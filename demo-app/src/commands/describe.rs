//! `describe`: a plugin's manifest and its capabilities, declared versus granted.

use std::fmt::Write as _;

use loader::{PluginInfo, RegistrationInfo, TimerInfo};
use plugin_api::{
    CommandDecl, Dependency, ErrorKind, HookDecl, MethodDecl, MiddlewareDecl, ProviderDecl,
    RegistrationDecl, RegistrationPatterns,
};
use serde::Serialize;

use crate::{
    error::AppError,
    safe::{self, Safe},
    session::Session,
};

/// What `describe` shows about one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct Description {
    /// Plugin name (`plugin` in JSON, as in every other output).
    #[serde(rename = "plugin")]
    pub name: String,
    /// Plugin version, when known.
    pub version: Option<String>,
    /// Lifecycle state.
    pub state: String,
    /// The plugin file; `None` (`null`) for a plugin compiled into the host.
    pub file: Option<String>,
    /// Where it runs (`in-process` or `process`), and its process id when isolated.
    pub isolation: String,
    /// The id of its child process, when it runs isolated.
    pub process_id: Option<u32>,
    /// Why it is not serving, or its last fault.
    pub error: Option<String>,
    /// The manifest, absent when the file failed before it could be read.
    #[serde(flatten)]
    pub manifest: Option<ManifestView>,
    /// Capabilities declared and granted.
    pub capabilities: Capabilities,
    /// What it registered at run time and is in force now, each with the manifest pattern
    /// that allows it.
    pub registrations: Vec<RegistrationInfo>,
    /// The timers (`Context::every`, `Context::after`) its instance runs now.
    pub timers: Vec<TimerInfo>,
}

/// The manifest fields `describe` shows (name and version are on [`Description`]).
#[derive(Debug, Clone, Serialize)]
pub struct ManifestView {
    /// One line about the plugin.
    pub description: String,
    /// plugin-api version it was built against.
    pub api_version: String,
    /// Semver requirement on the host.
    pub host_requirement: String,
    /// Plugins it needs, with version ranges.
    pub dependencies: Vec<Dependency>,
    /// Commands, short names.
    pub commands: Vec<CommandDecl>,
    /// Event types it emits.
    pub emits: Vec<String>,
    /// Event patterns it subscribes to.
    pub subscribes: Vec<String>,
    /// Hooks it handles, with priorities.
    pub hooks: Vec<HookDecl>,
    /// Providers it offers, with priorities and their methods.
    pub providers: Vec<ProviderDecl>,
    /// RPC methods it declares, with their help (plugins built with typed registration).
    pub rpc: Vec<MethodDecl>,
    /// Its middleware, when it installs one.
    pub middleware: Option<MiddlewareDecl>,
    /// Whether it answers direct messages and RPC.
    pub accepts_messages: bool,
    /// The name patterns within which it may register commands, hooks and providers at run
    /// time.
    pub patterns: RegistrationPatterns,
}

/// Declared versus granted capabilities.
#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    /// What the manifest declares.
    pub declared: Vec<String>,
    /// What the host config granted.
    pub granted: Vec<String>,
    /// Declared but not granted.
    pub denied: Vec<String>,
}

/// Describes plugin `name`, failed plugins included.
///
/// # Errors
/// No plugin of that name: the message lists the active plugins.
pub fn describe(session: &Session, name: &str) -> Result<Description, AppError> {
    let info = session.host.plugin(name).ok_or_else(|| {
        let active = session.active_plugin_names();
        let active = if active.is_empty() {
            "none".to_owned()
        } else {
            active.join(", ")
        };
        let plugins = session.host.plugins();
        let hint = crate::suggest::closest(name, plugins.iter().map(|p| p.name.as_str()))
            .map(|best| format!("did you mean {best}? "))
            .unwrap_or_default();
        AppError::failed(
            ErrorKind::NotFound,
            format!("no plugin named {name} ({hint}loaded: {active})"),
        )
    })?;
    // The host keeps a failed file's error with its causes.
    let error = info.error.clone();
    let registrations = session.host.registrations(Some(name));
    let timers = session.host.timers(name);
    Ok(Description::new(info, error, registrations, timers))
}

impl Description {
    fn new(
        info: PluginInfo,
        error: Option<String>,
        registrations: Vec<RegistrationInfo>,
        timers: Vec<TimerInfo>,
    ) -> Self {
        let denied = info
            .declared
            .iter()
            .filter(|c| !info.granted.contains(c))
            .cloned()
            .collect();
        Description {
            name: info.name,
            version: info.version,
            state: info.state.as_str().to_owned(),
            file: info.file.map(|f| f.display().to_string()),
            isolation: info.isolation.as_str().to_owned(),
            process_id: info.process_id,
            error,
            manifest: info.manifest.map(|m| ManifestView {
                description: m.description,
                api_version: m.api_version,
                host_requirement: m.host_requirement,
                dependencies: m.dependencies,
                commands: m.commands,
                emits: m.emits,
                subscribes: m.subscribes,
                hooks: m.hooks,
                providers: m.providers,
                rpc: m.rpc,
                middleware: m.middleware,
                accepts_messages: m.accepts_messages,
                patterns: m.patterns,
            }),
            capabilities: Capabilities {
                declared: info.declared,
                granted: info.granted,
                denied,
            },
            registrations,
            timers,
        }
    }
}

/// `describe` as text for people. Everything the plugin wrote is shown terminal-safe
/// ([`safe::text`]).
pub fn render_description(d: &Description) -> String {
    let mut out = String::new();
    let version = d.version.as_deref().unwrap_or("(unknown version)");
    let _ = writeln!(
        out,
        "{} {} ({})",
        Safe(&d.name),
        Safe(version),
        Safe(&d.state)
    );
    let mut field = |label: &str, value: &str| {
        let _ = writeln!(out, "  {label:<17}{}", safe::text(value));
    };
    if let Some(m) = &d.manifest {
        if !m.description.is_empty() {
            field("description:", &m.description);
        }
    }
    field("file:", d.file.as_deref().unwrap_or("none (compiled in)"));
    match d.process_id {
        Some(pid) => field("isolation:", &format!("{} (pid {pid})", d.isolation)),
        None => field("isolation:", &d.isolation),
    }
    if let Some(error) = &d.error {
        field("error:", error);
    }
    if let Some(m) = &d.manifest {
        field("api version:", &m.api_version);
        field("host requires:", &m.host_requirement);
        let deps: Vec<String> = m
            .dependencies
            .iter()
            .map(|dep| format!("{} {}", dep.name, dep.requirement))
            .collect();
        field("dependencies:", &joined(&deps));
        field("emits:", &joined(&m.emits));
        field("subscribes:", &joined(&m.subscribes));
        let hooks: Vec<String> = m
            .hooks
            .iter()
            .map(|h| format!("{} (priority {})", h.name, h.priority))
            .collect();
        field("hooks:", &joined(&hooks));
        let providers: Vec<String> = m
            .providers
            .iter()
            .map(|p| format!("{} (priority {})", p.name, p.priority))
            .collect();
        field("providers:", &joined(&providers));
        let middleware = m
            .middleware
            .as_ref()
            .map_or_else(|| "-".to_owned(), |m| format!("priority {}", m.priority));
        field("middleware:", &middleware);
        field(
            "messages:",
            if m.accepts_messages {
                "accepted (direct messages and RPC)"
            } else {
                "not accepted"
            },
        );
        push_commands(&mut out, &d.name, &m.commands);
        let rpc: Vec<(String, &str)> = m
            .rpc
            .iter()
            .map(|r| (r.name.clone(), r.description.as_str()))
            .collect();
        push_rows(&mut out, "rpc methods:", &rpc);
        for p in m.providers.iter().filter(|p| !p.methods.is_empty()) {
            let methods: Vec<(String, &str)> = p
                .methods
                .iter()
                .map(|r| (r.name.clone(), r.description.as_str()))
                .collect();
            push_rows(&mut out, &format!("provider {} methods:", p.name), &methods);
        }
        push_patterns(&mut out, &m.patterns);
    }
    push_registrations(&mut out, &d.name, &d.registrations);
    push_timers(&mut out, &d.timers);
    push_capabilities(&mut out, &d.capabilities);
    out
}

/// The timers running now: the event each queues, and how often or when.
fn push_timers(out: &mut String, timers: &[TimerInfo]) {
    let rows: Vec<(String, String)> = timers
        .iter()
        .map(|t| {
            let when = if t.repeats {
                format!("every {} ms", t.interval_ms)
            } else {
                format!("once, {} ms after it was started", t.interval_ms)
            };
            (format!("event {}", t.event), when)
        })
        .collect();
    let rows: Vec<(String, &str)> = rows.iter().map(|(e, w)| (e.clone(), w.as_str())).collect();
    push_rows(out, "timers:", &rows);
}

/// The run-time registration patterns, one row per kind that has any.
fn push_patterns(out: &mut String, patterns: &RegistrationPatterns) {
    let rows: Vec<(String, String)> = [
        ("commands", &patterns.commands),
        ("hooks", &patterns.hooks),
        ("providers", &patterns.providers),
    ]
    .into_iter()
    .filter(|(_, p)| !p.is_empty())
    .map(|(kind, p)| (kind.to_owned(), p.join(", ")))
    .collect();
    let rows: Vec<(String, &str)> = rows.iter().map(|(k, p)| (k.clone(), p.as_str())).collect();
    push_rows(out, "may register:", &rows);
}

/// The registrations in force: what, its help or priority, and the pattern that allows it.
fn push_registrations(out: &mut String, plugin: &str, registrations: &[RegistrationInfo]) {
    let rows: Vec<(String, String)> = registrations
        .iter()
        .map(|r| {
            let (what, detail) = match &r.decl {
                RegistrationDecl::Command(c) => (
                    format!("command {plugin}:{}", c.name),
                    c.description.clone(),
                ),
                RegistrationDecl::Hook(h) => (
                    format!("hook {}", h.name),
                    format!("priority {}", h.priority),
                ),
                RegistrationDecl::Provider(p) => {
                    let methods: Vec<&str> = p.methods.iter().map(|m| m.name.as_str()).collect();
                    (
                        format!("provider {}", p.name),
                        format!("priority {}, methods {}", p.priority, joined_str(&methods)),
                    )
                }
            };
            (
                what,
                format!("{detail} (allowed by {}, id {})", r.pattern, r.id),
            )
        })
        .collect();
    let rows: Vec<(String, &str)> = rows.iter().map(|(w, d)| (w.clone(), d.as_str())).collect();
    push_rows(out, "registered:", &rows);
}

fn joined_str(items: &[&str]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

fn joined(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

fn push_commands(out: &mut String, plugin: &str, commands: &[CommandDecl]) {
    let rows: Vec<(String, &str)> = commands
        .iter()
        .map(|c| (format!("{plugin}:{}", c.name), c.description.as_str()))
        .collect();
    push_rows(out, "commands:", &rows);
}

/// A heading, then one row per item: its name and help, aligned (`-` when there are none).
fn push_rows(out: &mut String, heading: &str, rows: &[(String, &str)]) {
    if rows.is_empty() {
        let _ = writeln!(out, "  {:<17}-", heading);
        return;
    }
    let _ = writeln!(out, "  {}", safe::text(heading));
    let names: Vec<String> = rows
        .iter()
        .map(|(name, _)| safe::text(name).into_owned())
        .collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (name, (_, help)) in names.iter().zip(rows) {
        let line = format!("    {name:<width$}  {}", Safe(help));
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn push_capabilities(out: &mut String, caps: &Capabilities) {
    if caps.declared.is_empty() {
        let _ = writeln!(out, "  {:<17}-", "capabilities:");
        return;
    }
    let _ = writeln!(out, "  capabilities:");
    let declared: Vec<String> = caps
        .declared
        .iter()
        .map(|c| safe::text(c).into_owned())
        .collect();
    let width = declared
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0);
    for (capability, shown) in caps.declared.iter().zip(&declared) {
        let verdict = if caps.granted.contains(capability) {
            "granted"
        } else {
            "denied by the host config"
        };
        let _ = writeln!(out, "    {shown:<width$}  {verdict}");
    }
}
