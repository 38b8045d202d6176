//! Example plugin: commands registered at run time (plugin-api 1.1), one per script of its
//! configuration.
//!
//! A script is a text template; `{field}` is replaced by that field of the command's JSON
//! arguments. At activation the plugin registers `scripts:script-<name>` for each entry of its
//! config, within the pattern `script-*` its manifest declares:
//!
//! ```toml
//! [plugins.scripts.config]
//! scripts = { hello = "hello, {name}!", shout = "{text}!!!" }
//! ```
//!
//! Without a `scripts` table it registers one script, `hello` = `hello, {name}!`.
//!
//! A host timer (`Context::every`, no thread of the plugin's own) delivers the private event
//! `report` every `report_ms` milliseconds (`[plugins.scripts.config] report_ms`, default
//! 60000): the plugin logs how many scripts ran since the last report. The timer stops with the
//! plugin.
//!
//! | command | arguments | answer |
//! |---|---|---|
//! | `scripts:script-<name>` | an object whose fields fill the template | `{"script": name, "output": text}` |
//! | `scripts:define` | `{"name": n, "template": t}` | the id of the new registration |
//! | `scripts:forget` | `{"name": n}` | `true` (the command is gone) |
//! | `scripts:list` | none | the script names in force, sorted |
//! | `scripts:stats` | none | `{"runs": n, "reports": m}`: script runs, and reports the timer made |
//!
//! Every registration is held in the plugin value: `forget` disposes one, and when the plugin
//! deactivates the host removes them all. A reloaded instance starts with none and registers its
//! config's scripts again; scripts added with `define` are not carried over.
//!
//! ```
//! assert_eq!(scripts::render("hi {name}, {name}", &serde_json::json!({"name": "Ada"})), "hi Ada, Ada");
//! assert_eq!(scripts::render("{missing} stays", &serde_json::json!({})), "{missing} stays");
//! ```
#![forbid(unsafe_code)]

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use plugin_api::{prelude::*, Timer};
use serde::{Deserialize, Serialize};

/// The prefix of every script's command name; the manifest allows `script-*`.
pub const PREFIX: &str = "script-";

/// The plugin's config table.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    /// Script name to template; `None` when the table has no `scripts` entry.
    #[serde(default)]
    pub scripts: Option<BTreeMap<String, String>>,
    /// How often the run count is reported, in milliseconds (default 60000).
    #[serde(default)]
    pub report_ms: Option<u64>,
}

/// What `scripts:stats` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Script commands run by this instance.
    pub runs: u64,
    /// Reports the timer made.
    pub reports: u64,
}

/// What a script command answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The script's name (without the `script-` prefix).
    pub script: String,
    /// The filled-in template.
    pub output: String,
}

/// Arguments of `scripts:define`.
#[derive(Debug, Clone, Deserialize)]
pub struct Define {
    /// The script's name.
    pub name: String,
    /// Its template.
    pub template: String,
}

/// Arguments of `scripts:forget`.
#[derive(Debug, Clone, Deserialize)]
pub struct Forget {
    /// The script's name.
    pub name: String,
}

/// `template` with every `{field}` replaced by that field of `args` (strings as they are,
/// other values as JSON); unknown fields stay as written.
pub fn render(template: &str, args: &serde_json::Value) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let field = &after[..close];
                match args.get(field) {
                    Some(serde_json::Value::String(s)) => out.push_str(s),
                    Some(other) => out.push_str(&other.to_string()),
                    None => {
                        out.push('{');
                        out.push_str(field);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The plugin: the registrations of its scripts, by script name, and its report timer.
#[derive(Default)]
pub struct Scripts {
    registered: BTreeMap<String, Registration>,
    /// Script runs; the handlers count into it.
    runs: Arc<AtomicU64>,
    /// Runs at the last report, and reports made.
    reported: (u64, u64),
    /// Stops when dropped (and with the plugin).
    report: Option<Timer>,
}

impl Scripts {
    /// Registers `scripts:script-<name>` answering `template`, replacing a script of that name.
    fn add(&mut self, ctx: &Context, name: &str, template: &str) -> PluginResult<u64> {
        // Dispose first: the host refuses a second registration of the same name.
        if let Some(old) = self.registered.remove(name) {
            old.dispose()?;
        }
        let script = name.to_owned();
        let template = template.to_owned();
        let runs = self.runs.clone();
        // Raw: the arguments are any JSON object (or nothing), which bincode cannot describe.
        let registration = ctx.register_command_raw(
            &format!("{PREFIX}{name}"),
            &format!("script: {template}"),
            move |_, args: &Payload| {
                let fields: serde_json::Value = if args.is_empty() {
                    serde_json::Value::Null
                } else {
                    args.decode()?
                };
                runs.fetch_add(1, Ordering::Relaxed);
                args.reply_with(&Output {
                    script: script.clone(),
                    output: render(&template, &fields),
                })
            },
        )?;
        let id = registration.id();
        self.registered.insert(name.to_owned(), registration);
        Ok(id)
    }

    fn define(&mut self, ctx: &Context, args: Define) -> PluginResult<u64> {
        self.add(ctx, &args.name, &args.template)
    }

    fn forget(&mut self, _: &Context, args: Forget) -> PluginResult<bool> {
        let registration = self
            .registered
            .remove(&args.name)
            .ok_or_else(|| PluginError::not_found(format!("no script named {}", args.name)))?;
        registration.dispose()?;
        Ok(true)
    }

    fn list(&mut self, _: &Context, _: NoArgs) -> PluginResult<Vec<String>> {
        Ok(self.registered.keys().cloned().collect())
    }

    fn stats(&mut self, _: &Context, _: NoArgs) -> PluginResult<Stats> {
        Ok(Stats {
            runs: self.runs.load(Ordering::Relaxed),
            reports: self.reported.1,
        })
    }
}

impl Plugin for Scripts {
    fn manifest() -> Manifest {
        Manifest::new("scripts").commands_matching(format!("{PREFIX}*"))
    }

    fn register(api: &mut Registrar<Self>) {
        api.command(
            "define",
            r#"adds script-{"name"} answering {"template"}"#,
            Self::define,
        )
        .command("forget", r#"removes script-{"name"}"#, Self::forget)
        .command("list", "the scripts in force", Self::list)
        .command("stats", "script runs and timer reports", Self::stats);
    }

    fn activate(&mut self, ctx: &Context) -> PluginResult<()> {
        let config: Config = ctx.config()?;
        let scripts = config
            .scripts
            .unwrap_or_else(|| BTreeMap::from([("hello".to_owned(), "hello, {name}!".to_owned())]));
        for (name, template) in &scripts {
            self.add(ctx, name, template)?;
        }
        let every = Duration::from_millis(config.report_ms.unwrap_or(60_000).max(1));
        self.report = Some(ctx.every(every, "report")?);
        log::info!("{} scripts registered", self.registered.len());
        Ok(())
    }

    /// The timer's `report` (a private event: it needs no subscription).
    fn on_event(&mut self, _ctx: &Context, event: &Event) -> PluginResult<Option<Payload>> {
        if event.event_type.as_str() == "report" {
            let runs = self.runs.load(Ordering::Relaxed);
            let (last, reports) = self.reported;
            self.reported = (runs, reports + 1);
            log::info!("{} script runs since the last report", runs - last);
        }
        Ok(None)
    }
}

export_plugin!(Scripts);
