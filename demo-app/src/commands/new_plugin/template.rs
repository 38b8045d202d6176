//! The files of a new plugin crate, as text. Pure: no file system.

use std::path::Path;

/// Where the new crate gets `plugin-api` and `loader` from: path dependencies on a checkout of
/// this repository. (Nothing is published: `plugin_api` and `loader` on crates.io are other
/// people's crates.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSource<'a> {
    /// The plugin-api crate folder, as written into Cargo.toml.
    pub plugin_api: &'a Path,
    /// The loader crate folder.
    pub loader: &'a Path,
}

/// Rust keywords and the names of the standard crates: cargo refuses them as package names.
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "gen",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "alloc",
    "core",
    "std",
    "test",
    "proc_macro",
    "proc-macro",
    "build",
    "deps",
    "examples",
    "incremental",
];

/// Names the scaffold's own code uses: a plugin type with one of these names would shadow it.
const TAKEN_TYPE_NAMES: &[&str] = &[
    "CommandRequest",
    "Context",
    "ErrorKind",
    "Event",
    "HookOutcome",
    "Manifest",
    "Message",
    "MiddlewareAction",
    "Payload",
    "Plugin",
    "PluginError",
    "PluginResult",
    "HelloReply",
];

/// Checks that `name` works as a plugin name (the loader's rule: a-z, 0-9, `-`, `_`, at most
/// 64 characters, not `host` or `plugin`) and as a cargo package name (starts with a letter,
/// not a keyword or a standard crate).
///
/// # Errors
/// Why not, in one line.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("plugin name {name:?} must be 1 to 64 characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "plugin name {name:?} may only contain a-z, 0-9, '-' and '_' (not {bad:?})"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("plugin name {name:?} must start with a letter a-z"));
    }
    if name == "host" || name == "plugin" || name == "plugin-api" || name == "loader" {
        return Err(format!("plugin name {name:?} is reserved"));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "plugin name {name:?} is a Rust keyword or standard crate name, which cargo refuses"
        ));
    }
    Ok(())
}

/// The plugin's Rust type name: `hello-world` → `HelloWorld`, with a `Plugin` suffix when that
/// would clash with a name the generated code uses (`event` → `EventPlugin`).
pub fn type_name(name: &str) -> String {
    let camel: String = name
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    if TAKEN_TYPE_NAMES.contains(&camel.as_str()) {
        camel + "Plugin"
    } else {
        camel
    }
}

/// `Cargo.toml` of the new crate.
pub fn cargo_toml(name: &str, api: &ApiSource<'_>) -> String {
    let plugin_api = format!("{{ path = {} }}", toml_string(&path_text(api.plugin_api)));
    let loader = format!(
        "{{ path = {}, features = [\"testing\"] }}",
        toml_string(&path_text(api.loader))
    );
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
description = "The {name} plugin"
publish = false

[lib]
# cdylib: the library the host loads; rlib: lets the unit tests run the plugin in process.
crate-type = ["cdylib", "rlib"]

[dependencies]
plugin-api = {plugin_api}
serde = {{ version = "1", features = ["derive"] }}

[dev-dependencies]
# The in-process test harness: a real host running this plugin compiled into the test.
loader = {loader}
serde_json = "1"

# A workspace of its own, so the crate builds on its own wherever it sits, even inside another
# workspace's folder.
[workspace]
"#
    )
}

/// `src/lib.rs` of the new crate. The name appears only in constants, the docs and the type
/// name, so every line has the layout rustfmt gives it whatever the name's length.
pub fn lib_rs(name: &str) -> String {
    let ty = type_name(name);
    format!(
        r#"//! The `{name}` plugin.
//!
//! | command | arguments | answer |
//! |---|---|---|
//! | `{name}:hello` | `{{}}` | `{{"message": "hello from {name}"}}` |
#![forbid(unsafe_code)]

use plugin_api::prelude::*;
use serde::{{Deserialize, Serialize}};

/// The plugin's name: its commands are `{name}:<command>`.
pub const NAME: &str = "{name}";

/// The answer of `{name}:hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {{
    /// The greeting.
    pub message: String,
}}

/// The plugin. The host creates it with `Default` and calls it from one thread at a time.
#[derive(Debug, Default)]
pub struct {ty};

impl {ty} {{
    /// `{name}:hello`: takes no arguments, answers in the caller's codec (JSON to the CLI,
    /// bincode to Rust callers).
    fn hello(&mut self, _ctx: &Context, _: NoArgs) -> PluginResult<HelloReply> {{
        Ok(HelloReply {{
            message: format!("hello from {{NAME}}"),
        }})
    }}
}}

impl Plugin for {ty} {{
    fn manifest() -> Manifest {{
        Manifest::new(NAME)
    }}

    // Each command named once, with its help and its handler; unknown commands are answered
    // "not found" by plugin-api.
    fn register(api: &mut Registrar<Self>) {{
        api.command("hello", "answers with a greeting", Self::hello);
    }}
}}

export_plugin!({ty});

#[cfg(test)]
mod tests {{
    use super::*;
    use loader::testing::Harness;

    type Subject = {ty};

    #[test]
    fn hello_answers_with_a_greeting() {{
        let harness = Harness::new(plugin_api::static_plugin!(Subject)).expect("plugin activates");
        let reply = harness.execute_json("hello", "{{}}").expect("hello succeeds");
        let expected = serde_json::json!({{"message": format!("hello from {{NAME}}")}});
        assert_eq!(reply, expected);
    }}
}}
"#
    )
}

/// `.gitignore` of the new crate.
pub const GITIGNORE: &str = "/target\n";

/// A path as Cargo.toml wants it: forward slashes, which cargo accepts on every platform.
fn path_text(path: &Path) -> String {
    let text = path.to_string_lossy();
    if cfg!(windows) {
        text.replace('\\', "/")
    } else {
        text.into_owned()
    }
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for name in ["hello", "hello-world", "a", "x_1", "h2o", &"a".repeat(64)] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn invalid_names_say_why() {
        let cases = [
            ("", "1 to 64"),
            ("Hello", "'H'"),
            ("hello world", "' '"),
            ("héllo", "'é'"),
            ("1abc", "start with a letter"),
            ("-abc", "start with a letter"),
            ("host", "reserved"),
            ("fn", "keyword"),
            ("std", "keyword"),
        ];
        for (name, why) in cases {
            let err = validate_name(name).expect_err(name);
            assert!(err.contains(why), "{name}: {err}");
        }
        assert!(validate_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn type_names_are_camel_case_and_avoid_the_prelude() {
        assert_eq!(type_name("hello"), "Hello");
        assert_eq!(type_name("hello-big_world"), "HelloBigWorld");
        assert_eq!(type_name("x--y"), "XY");
        assert_eq!(type_name("h2o"), "H2o");
        assert_eq!(type_name("event"), "EventPlugin");
        assert_eq!(type_name("hello-reply"), "HelloReplyPlugin");
    }

    #[test]
    fn cargo_toml_by_path() {
        let text = cargo_toml(
            "hello",
            &ApiSource {
                plugin_api: Path::new("../plugin-api"),
                loader: Path::new("../loader"),
            },
        );
        assert!(text
            .starts_with("[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"));
        assert!(text.contains("crate-type = [\"cdylib\", \"rlib\"]"));
        assert!(text.contains("plugin-api = { path = \"../plugin-api\" }\n"));
        assert!(text.contains("loader = { path = \"../loader\", features = [\"testing\"] }\n"));
        assert!(text.trim_end().ends_with("[workspace]"));
        assert!(toml::from_str::<toml::Table>(&text).is_ok(), "{text}");
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn lib_rs_has_the_plugin_the_command_and_a_test() {
        let text = lib_rs("hello-world");
        assert!(text.contains("#![forbid(unsafe_code)]"));
        assert!(text.contains("pub const NAME: &str = \"hello-world\";"));
        assert!(text.contains(r#"message: format!("hello from {NAME}"),"#));
        assert!(text.contains("pub struct HelloWorld;"));
        assert!(text.contains("impl Plugin for HelloWorld {"));
        assert!(text.contains(r#"api.command("hello", "answers with a greeting", Self::hello);"#));
        assert!(text.contains("export_plugin!(HelloWorld);"));
        assert!(text.contains("type Subject = HelloWorld;"));
        assert!(text.contains("Harness::new(plugin_api::static_plugin!(Subject))"));
        assert!(text.contains(r#"serde_json::json!({"message": format!("hello from {NAME}")})"#));
        assert!(!text.contains("match command"), "no hand-written dispatch");
    }
}
