//! Example plugin: a counter persisted in the plugin's own storage, plus an in-memory tally that
//! survives hot reloads through `save_state` / `restore_state`.
//!
//! | command | arguments | answer |
//! |---|---|---|
//! | `counter:increment` | none, or `{"by": n}` (default 1) | `{"value": total, "session": tally}` |
//! | `counter:get` | none | `{"value": total, "session": tally}` |
//!
//! `value` is the stored total (key `total`); `session` counts the increments since the plugin
//! was first loaded in this host process.
//!
//! ```
//! use counter::{tally_from_state, tally_to_state};
//! assert_eq!(tally_from_state(&tally_to_state(42)), Some(42));
//! assert_eq!(tally_from_state(&[1, 2, 3]), None);
//! ```
#![forbid(unsafe_code)]

use plugin_api::prelude::*;
use serde::{Deserialize, Serialize};

/// The storage key of the persistent total.
pub const TOTAL_KEY: &str = "total";

/// Arguments of `counter:increment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Increment {
    /// How much to add.
    #[serde(default = "one")]
    pub by: u64,
}

fn one() -> u64 {
    1
}

impl Default for Increment {
    fn default() -> Self {
        Increment { by: one() }
    }
}

/// The answer of both commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// The stored total.
    pub value: u64,
    /// Increments since the plugin was first loaded.
    pub session: u64,
}

/// `total + by`.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] when the sum does not fit in a `u64` (nothing is written).
pub fn add(total: u64, by: u64) -> PluginResult<u64> {
    total
        .checked_add(by)
        .ok_or_else(|| PluginError::invalid(format!("counter overflow: {total} + {by}")))
}

/// The tally as saved state: 8 little-endian bytes.
pub fn tally_to_state(tally: u64) -> Vec<u8> {
    tally.to_le_bytes().to_vec()
}

/// The tally from saved state; `None` unless `state` is exactly 8 bytes.
pub fn tally_from_state(state: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(state).ok().map(u64::from_le_bytes)
}

/// The counter plugin.
#[derive(Debug, Default)]
pub struct Counter {
    tally: u64,
}

impl Counter {
    fn total(ctx: &Context) -> PluginResult<u64> {
        Ok(ctx.storage().get::<u64>(TOTAL_KEY)?.unwrap_or(0))
    }

    /// Raw, because no arguments at all (an empty payload, in either codec) means `by: 1`.
    fn increment(&mut self, ctx: &Context, args: &Payload) -> PluginResult<Payload> {
        let Increment { by } = if args.is_empty() {
            Increment::default()
        } else {
            args.decode()?
        };
        let value = add(Self::total(ctx)?, by)?;
        ctx.storage().set(TOTAL_KEY, &value)?;
        self.tally = self.tally.saturating_add(1);
        args.reply_with(&Count {
            value,
            session: self.tally,
        })
    }

    fn get(&mut self, ctx: &Context, _: NoArgs) -> PluginResult<Count> {
        Ok(Count {
            value: Self::total(ctx)?,
            session: self.tally,
        })
    }
}

impl Plugin for Counter {
    fn manifest() -> Manifest {
        Manifest::new("counter")
    }

    fn register(api: &mut Registrar<Self>) {
        api.command_raw(
            "increment",
            r#"adds {"by": n} (default 1) to the stored total"#,
            Self::increment,
        )
        .command(
            "get",
            "the stored total and this session's tally",
            Self::get,
        );
    }

    fn save_state(&mut self, _ctx: &Context) -> PluginResult<Option<Vec<u8>>> {
        Ok(Some(tally_to_state(self.tally)))
    }

    fn restore_state(
        &mut self,
        _ctx: &Context,
        state: &[u8],
        from_version: &str,
    ) -> PluginResult<()> {
        match tally_from_state(state) {
            Some(tally) => self.tally = tally,
            None => log::warn!(
                "ignoring saved state of {} bytes from counter {from_version}: expected 8",
                state.len()
            ),
        }
        Ok(())
    }
}

export_plugin!(Counter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_arguments_default_to_one() -> PluginResult<()> {
        assert_eq!(Increment::default().by, 1);
        assert_eq!(Payload::from_json_str("{}")?.decode::<Increment>()?.by, 1);
        assert_eq!(
            Payload::from_json_str(r#"{"by":5}"#)?
                .decode::<Increment>()?
                .by,
            5
        );
        Ok(())
    }

    #[test]
    fn add_refuses_overflow() -> PluginResult<()> {
        assert_eq!(add(2, 3)?, 5);
        let err = add(u64::MAX, 1).expect_err("overflows");
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        Ok(())
    }

    #[test]
    fn state_round_trips_and_rejects_bad_lengths() {
        assert_eq!(tally_to_state(258), [2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(tally_from_state(&tally_to_state(u64::MAX)), Some(u64::MAX));
        assert_eq!(tally_from_state(&[]), None);
        assert_eq!(tally_from_state(&[0; 9]), None);
    }
}
