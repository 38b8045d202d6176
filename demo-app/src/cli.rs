//! The command line, as clap types.
//!
//! Each subcommand is one variant of [`Command`] with its own `Args` struct, so later
//! subcommands (watch, trace, stats, doctor, new-plugin, bench) are added as new variants and a
//! match arm in `main.rs`, without touching the existing ones.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `demo-app [--plugins DIR] [--data DIR] [--config FILE] [-v] <COMMAND>`
#[derive(Debug, Parser)]
#[command(name = "demo-app", version, about, long_about = None)]
pub struct Cli {
    /// Where the host finds its settings and plugins.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
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
    fn missing_subcommand_is_a_usage_error() {
        let err = parse(&[]).expect_err("usage error");
        assert_eq!(err.exit_code(), 2);
    }
}
