//! The command line, as clap types.
//!
//! Each subcommand is one variant of [`Command`] with its own `Args` struct; `main.rs` sends each
//! to its module under `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `demo-app [--plugins DIR] [--data DIR] [--config FILE] [-v] <COMMAND>`
#[derive(Debug, Parser)]
#[command(name = "demo-app", version = VERSION.as_str(), about, long_about = None)]
pub struct Cli {
    /// Where the host finds its settings and plugins.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--version`: this program's, the loader's, the plugin-api version plugins are checked
/// against (same major; for 0.x the same minor), and the protocol its worker processes speak.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (loader {}, plugin-api {}, worker protocol {})",
        env!("CARGO_PKG_VERSION"),
        loader::HOST_VERSION,
        plugin_api::API_VERSION,
        loader::worker::PROTOCOL_VERSION
    )
});

impl Cli {
    /// Parses the process's arguments.
    ///
    /// `trace` and `stats` take the rest of the line as the command they run first, which would
    /// swallow their own options typed after it (`trace call greeter:greet {} --json`). The
    /// first word of that rest that is one of their own or the global options starts the
    /// options again: those words are moved in front of the command line and the arguments
    /// parsed once more.
    pub fn parse_args() -> Cli {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        Cli::parse_from(Self::with_options_first(args))
    }

    /// `args` with the options typed after the command line of `trace`/`stats` moved before it.
    fn with_options_first(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
        let Ok(cli) = Cli::try_parse_from(&args) else {
            return args;
        };
        let (Command::Trace(observe) | Command::Stats(observe)) = &cli.command else {
            return args;
        };
        let Some(first_option) = observe.command.iter().position(|w| is_observe_option(w)) else {
            return args;
        };
        // The command line is the last words of `args`.
        let words = observe.command.len();
        let (Some(start), Some(options_start)) = (
            args.len().checked_sub(words),
            args.len().checked_sub(words - first_option),
        ) else {
            return args;
        };
        let mut moved = args[..start].to_vec();
        moved.extend_from_slice(&args[options_start..]);
        moved.extend_from_slice(&args[start..options_start]);
        moved
    }
}

/// Whether `word` is an option of `trace`/`stats` or a global one (`--json`, `--plugins`, ...),
/// rather than one of the command they run (`--pretty`, `--collect`).
fn is_observe_option(word: &str) -> bool {
    let name = word.split('=').next().unwrap_or(word);
    matches!(
        name,
        "--json"
            | "--plugins"
            | "--data"
            | "--config"
            | "--color"
            | "--verbose"
            | "--quiet"
            | "-v"
            | "-vv"
            | "-q"
    )
}

/// Options every subcommand shares. They are `global` so they may also follow the subcommand
/// (`demo-app list --data d`), which is what people type after trying a command once.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Plugins folder [default: the config's, else `plugins/` beside this executable, into
    /// which the example plugins are copied]
    #[arg(long, value_name = "DIR", global = true)]
    pub plugins: Option<PathBuf>,
    /// Data folder for durable storage [default: the config's, else storage in memory]
    #[arg(long, value_name = "DIR", global = true)]
    pub data: Option<PathBuf>,
    /// Host configuration file (TOML); the flags above override its values
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Log more: -v info, -vv debug (`RUST_LOG` refines it)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Run PLUGIN in a child process of its own, which the host survives whatever the plugin
    /// does (repeatable; `all` isolates every plugin)
    #[arg(long, value_name = "PLUGIN", global = true)]
    pub isolate: Vec<String>,
    /// Print only results and errors: no progress bar, no warnings, no shell banner
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Colour on stderr and in the shell [default: auto, on a terminal unless NO_COLOR is set]
    #[arg(long, value_name = "WHEN", global = true, default_value = "auto")]
    pub color: ColorWhen,
}

/// `--color auto|always|never`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless `NO_COLOR` is set
    #[default]
    Auto,
    /// Always, even into a pipe
    Always,
    /// Never
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the plugins folder and list every plugin file, failures included
    List(ListArgs),
    /// Show a plugin's manifest and its declared and granted capabilities
    Describe(DescribeArgs),
    /// Run a command `<plugin>:<command>` with JSON arguments and print its JSON result
    Call(CallArgs),
    /// Publish an event from the host
    Emit(EmitArgs),
    /// Type commands at a prompt with the plugins kept loaded (JSON lines when stdin is not a
    /// terminal)
    Shell,
    /// Load the plugins folder, then watch it: reload changed files and print every lifecycle
    /// event as it happens
    Watch(WatchArgs),
    /// Print the flight recorder as a causal tree, after running an optional command
    Trace(ObserveArgs),
    /// Print each plugin's counters and latencies, after running an optional command
    Stats(ObserveArgs),
    /// Examine every file of the plugins folder without activating anything; exit 1 on problems
    Doctor(JsonArgs),
    /// Print the events and messages that could not be delivered
    DeadLetters(JsonArgs),
    /// Create a new plugin crate ready to build and load
    NewPlugin(NewPluginArgs),
    /// Run the benchmark suite against the plugins built beside this program: each case's cost,
    /// the raw baseline measured in the same run, their ratio and its target (build with
    /// --release for meaningful numbers; ignores --plugins, --data and --config)
    Bench(BenchArgs),
    /// Print a completion script for a shell (`demo-app completions bash > /etc/bash_completion.d/demo-app`)
    Completions(CompletionsArgs),
    /// Print the manual page in roff (`demo-app man | man -l -`)
    Man,
}

/// `completions <shell>`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    pub shell: clap_complete::Shell,
}

/// `list [--json]`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print one JSON array instead of a table
    #[arg(long)]
    pub json: bool,
}

/// `describe <plugin> [--json]`
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Plugin name
    pub plugin: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `call <plugin:command> [JSON] [--pretty]`
#[derive(Debug, Args)]
pub struct CallArgs {
    /// Command to run, as `<plugin>:<command>`
    #[arg(value_name = "PLUGIN:COMMAND")]
    pub command: String,
    /// Arguments as one JSON document (quote it for the shell)
    // Negative numbers are JSON documents too; without this clap reads `-1` as a flag.
    #[arg(
        value_name = "JSON",
        default_value = "{}",
        allow_negative_numbers = true
    )]
    pub args: String,
    /// Indent the result
    #[arg(long)]
    pub pretty: bool,
    /// Accepted everywhere for scripts' sake: the result is JSON already
    #[arg(long)]
    pub json: bool,
}

/// `emit <type> [JSON] [--collect]`
#[derive(Debug, Args)]
pub struct EmitArgs {
    /// Event type, for example `data:changed`
    #[arg(value_name = "TYPE")]
    pub event_type: String,
    /// Event data as one JSON document
    #[arg(
        value_name = "JSON",
        default_value = "{}",
        allow_negative_numbers = true
    )]
    pub event_data: String,
    /// Wait for every subscriber and print their answers
    #[arg(long)]
    pub collect: bool,
    /// Accepted everywhere for scripts' sake: the answer is JSON already
    #[arg(long)]
    pub json: bool,
}

/// `watch [--json] [--debounce-ms N] [--for-ms N]`
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// One JSON object per line instead of text
    #[arg(long)]
    pub json: bool,
    /// How long a changed file must stay unchanged before it is applied
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub debounce_ms: u64,
    /// Stop after this long [default: run until interrupted]
    #[arg(long, value_name = "MS")]
    pub for_ms: Option<u64>,
}

/// `trace|stats [--json] [COMMAND-LINE...]`
#[derive(Debug, Args)]
pub struct ObserveArgs {
    /// JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// A shell command to run first, `call ...` or `emit ...`; every word after its name
    /// belongs to it, so put this command's own options before it
    #[arg(
        value_name = "COMMAND-LINE",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `doctor|dead-letters [--json]`
#[derive(Debug, Args)]
pub struct JsonArgs {
    /// JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `new-plugin <name> [--path DIR] [--api-path PATH]`
#[derive(Debug, Args)]
pub struct NewPluginArgs {
    /// Plugin and crate name: a-z, 0-9, `-` and `_`, starting with a letter
    pub name: String,
    /// Folder to create the crate in [default: the current folder]
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Depend on this plugin-api folder (and the `loader` beside it) by path [default: this
    /// repository's when the crate is created inside it, else the published versions]
    #[arg(long, value_name = "PATH")]
    pub api_path: Option<PathBuf>,
}

/// `bench [--json] [--quick] [--only NAME]...`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Print one JSON object `{"machine", "cases": [...], "scaling": [...]}` instead of tables
    #[arg(long)]
    pub json: bool,
    /// Few repetitions and 5 plugins instead of 100: a smoke test that every case runs, not a
    /// measurement (about 10 s in a debug build on two cores, whose plugins are ~15 MB each)
    #[arg(long)]
    pub quick: bool,
    /// Run only the cases whose name contains NAME (repeatable: `--only isolated --only
    /// load_one`); the growth curves run only with every case
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("demo-app").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn call_defaults_to_empty_object() {
        let cli = parse(&["call", "greeter:greet"]).expect("valid");
        let Command::Call(call) = cli.command else {
            panic!("not a call: {:?}", cli.command);
        };
        assert_eq!(call.command, "greeter:greet");
        assert_eq!(call.args, "{}");
        assert!(!call.pretty);
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let before = parse(&["--data", "/tmp/d", "-v", "call", "counter:increment"]).expect("ok");
        let after = parse(&["call", "counter:increment", "--data", "/tmp/d", "-v"]).expect("ok");
        for cli in [before, after] {
            assert_eq!(cli.global.data, Some(PathBuf::from("/tmp/d")));
            assert_eq!(cli.global.verbose, 1);
        }
    }

    #[test]
    fn negative_number_is_a_json_argument() {
        let cli = parse(&["call", "echo:reverse", "-1"]).expect("valid");
        let Command::Call(call) = cli.command else {
            panic!("not a call");
        };
        assert_eq!(call.args, "-1");
    }

    #[test]
    fn emit_collect_flag() {
        let cli = parse(&["emit", "data:changed", r#"{"a":1}"#, "--collect"]).expect("valid");
        let Command::Emit(emit) = cli.command else {
            panic!("not an emit");
        };
        assert_eq!(emit.event_type, "data:changed");
        assert_eq!(emit.event_data, r#"{"a":1}"#);
        assert!(emit.collect);
    }

    #[test]
    fn trace_takes_the_rest_as_a_command_line() {
        let cli =
            parse(&["trace", "--json", "call", "echo:reverse", "-1", "--pretty"]).expect("valid");
        let Command::Trace(trace) = cli.command else {
            panic!("not a trace");
        };
        assert!(trace.json);
        assert_eq!(trace.command, ["call", "echo:reverse", "-1", "--pretty"]);
        let cli = parse(&["stats"]).expect("valid");
        let Command::Stats(stats) = cli.command else {
            panic!("not stats");
        };
        assert!(!stats.json && stats.command.is_empty());
    }

    #[test]
    fn watch_defaults() {
        let cli = parse(&["watch", "--for-ms", "50"]).expect("valid");
        let Command::Watch(watch) = cli.command else {
            panic!("not a watch");
        };
        assert_eq!(watch.debounce_ms, 300);
        assert_eq!(watch.for_ms, Some(50));
        assert!(!watch.json);
    }

    #[test]
    fn new_plugin_and_kebab_case_names() {
        let cli = parse(&["new-plugin", "hello", "--path", "/tmp/x"]).expect("valid");
        let Command::NewPlugin(args) = cli.command else {
            panic!("not new-plugin");
        };
        assert_eq!(args.name, "hello");
        assert_eq!(args.path, Some(PathBuf::from("/tmp/x")));
        assert!(matches!(
            parse(&["dead-letters", "--json"]).expect("valid").command,
            Command::DeadLetters(JsonArgs { json: true })
        ));
    }

    #[test]
    fn bench_flags() {
        let cli = parse(&["bench", "--quick", "--json"]).expect("valid");
        let Command::Bench(args) = cli.command else {
            panic!("not bench");
        };
        assert!(args.quick && args.json);
        let Command::Bench(args) = parse(&["bench"]).expect("valid").command else {
            panic!("not bench");
        };
        assert!(!args.quick && !args.json);
    }

    #[test]
    fn options_after_the_command_line_of_trace_are_traces() {
        let args = |words: &[&str]| -> Vec<std::ffi::OsString> {
            std::iter::once("demo-app")
                .chain(words.iter().copied())
                .map(Into::into)
                .collect()
        };
        let moved = Cli::with_options_first(args(&[
            "--data",
            "d",
            "trace",
            "call",
            "echo:reverse",
            "\"a\"",
            "--pretty",
            "--json",
            "-v",
        ]));
        let cli = Cli::parse_from(moved);
        let Command::Trace(trace) = cli.command else {
            panic!("not a trace");
        };
        assert!(trace.json);
        assert_eq!(trace.command, ["call", "echo:reverse", "\"a\"", "--pretty"]);
        assert_eq!(cli.global.verbose, 1);
        assert_eq!(cli.global.data, Some(PathBuf::from("d")));
        let plain = args(&["stats", "emit", "x:y", "--collect"]);
        assert_eq!(Cli::with_options_first(plain.clone()), plain);
    }

    #[test]
    fn version_names_the_plugin_api_and_the_worker_protocol() {
        let version = Cli::command().render_version();
        assert!(
            version.contains(&format!("plugin-api {}", plugin_api::API_VERSION)),
            "{version}"
        );
        assert!(
            version.contains(&format!(
                "worker protocol {}",
                loader::worker::PROTOCOL_VERSION
            )),
            "{version}"
        );
    }

    #[test]
    fn missing_subcommand_is_a_usage_error() {
        let err = parse(&[]).expect_err("usage error");
        assert_eq!(err.exit_code(), 2);
    }
}
