//! Benchmark plugin: answers a small command, in two versions for the hot-reload benchmark.
//!
//! Two crates build this same file: `bench-echo` (version 0.1.0) and `bench-echo-next`
//! (version 0.2.0). Both declare the plugin name `bench-echo`, so replacing one library by the
//! other in the plugins folder is a hot reload of one plugin to a new version.
//!
//! | command | arguments | answer |
//! |---|---|---|
//! | `bench-echo:echo` | a [`Sample`] | the same sample, re-encoded in the caller's codec |
//! | `bench-echo:noop` | anything | an empty payload, without decoding the arguments |
//! | `bench-echo:version` | none | this build's version (a string) |
//!
//! The number of commands served so far is handed over across reloads.
#![forbid(unsafe_code)]

use plugin_api::prelude::*;
use serde::{Deserialize, Serialize};

/// The plugin name both builds declare.
pub const NAME: &str = "bench-echo";

/// The benchmark's request: 58 bytes in bincode when `data` is empty. `loader-bench` has a
/// struct of the same shape (serde matches by shape, not by type identity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// A large id (9 bytes as a bincode varint).
    pub id: u64,
    /// A timestamp (9 bytes).
    pub timestamp: u64,
    /// A 24-character name (25 bytes).
    pub name: String,
    /// A score (8 bytes).
    pub score: f64,
    /// Flags (5 bytes).
    pub flags: u32,
    /// A flag (1 byte).
    pub ok: bool,
    /// Extra bytes, empty by default (1 byte); the benchmark grows it to scale the payload.
    pub data: Vec<u8>,
}

/// Serves one command.
///
/// # Errors
/// A codec error when `echo` gets something that is not a [`Sample`]; not-found for an
/// unknown command.
pub fn serve(command: &str, args: &Payload) -> PluginResult<Payload> {
    match command {
        "echo" => args.reply_with(&args.decode::<Sample>()?),
        "noop" => Ok(Payload::empty()),
        "version" => args.reply_with(env!("CARGO_PKG_VERSION")),
        other => Err(PluginError::not_found(format!(
            "command not found: {NAME}:{other}"
        ))),
    }
}

/// The plugin; it counts the commands it served.
#[derive(Debug, Default)]
pub struct Echo {
    served: u64,
}

impl Plugin for Echo {
    fn manifest() -> Manifest {
        Manifest::new(NAME)
            .command("echo")
            .command("noop")
            .command("version")
    }

    fn handle_command(
        &mut self,
        _ctx: &Context,
        command: &str,
        args: &Payload,
    ) -> PluginResult<Payload> {
        self.served += 1;
        serve(command, args)
    }

    fn save_state(&mut self, _ctx: &Context) -> PluginResult<Option<Vec<u8>>> {
        Ok(Some(self.served.to_le_bytes().to_vec()))
    }

    fn restore_state(&mut self, _ctx: &Context, state: &[u8], _from: &str) -> PluginResult<()> {
        if let Ok(bytes) = <[u8; 8]>::try_from(state) {
            self.served = u64::from_le_bytes(bytes);
        }
        Ok(())
    }
}

export_plugin!(Echo);

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sample {
        Sample {
            id: u64::MAX - 7,
            timestamp: 1_700_000_000_000_000_000,
            name: "bench-sample-0123456789a".to_owned(),
            score: 0.5,
            flags: u32::MAX,
            ok: true,
            data: Vec::new(),
        }
    }

    #[test]
    fn the_sample_is_58_bytes() -> PluginResult<()> {
        assert_eq!(Payload::encode(&sample())?.len(), 58);
        Ok(())
    }

    #[test]
    fn echo_answers_the_same_sample_in_the_callers_codec() -> PluginResult<()> {
        let args = Payload::encode(&sample())?;
        assert_eq!(serve("echo", &args)?.decode::<Sample>()?, sample());
        let json = Payload::json(&sample())?;
        assert_eq!(serve("echo", &json)?.codec, plugin_api::Codec::Json);
        assert!(serve("noop", &args)?.is_empty());
        assert_eq!(
            serve("version", &Payload::empty())?.decode::<String>()?,
            env!("CARGO_PKG_VERSION")
        );
        assert!(serve("nope", &args).is_err());
        Ok(())
    }
}
