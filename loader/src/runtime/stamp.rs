//! The stamp of the call a thread is running: who made it, its id, and its cancellation token,
//! as the host set them when it entered plugin code. The plugin's context reads them when the
//! handler asks (`Context::caller`, `Context::is_cancelled`); the plugin never writes them.
//!
//! The stamp lives in a thread-local, set by [`with_stamp`] around each entry into plugin code
//! (by `invoke` in the host, by the worker's executor for an isolated plugin). An event's stamp
//! holds no token of its own: only the plugin's, which the thread learnt once when it started
//! serving ([`serve_with`]), so a delivery costs no allocation.

use std::cell::{Cell, RefCell};

use plugin_api::{CallStamp, CancellationToken};

/// The longest caller name a stamp keeps: plugin names are at most 64 bytes (and the host is
/// `host`).
const NAME_MAX: usize = 64;

/// A caller's name as plain bytes, so that a stamp can live in a thread-local without a
/// destructor (whose lazy set-up would cost every call a few dozen instructions).
#[derive(Clone, Copy)]
pub(crate) struct Name {
    len: u8,
    bytes: [u8; NAME_MAX],
}

impl Name {
    /// `name`, cut at [`NAME_MAX`] bytes on a character boundary (names are never longer).
    pub fn new(name: &str) -> Name {
        let mut end = name.len().min(NAME_MAX);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; NAME_MAX];
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        Name {
            len: end as u8,
            bytes,
        }
    }

    pub fn as_str(&self) -> &str {
        // Copied from a `str` up to a character boundary: always UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// What the host knows of a call when it enters plugin code.
pub(crate) struct Stamp {
    /// The calling plugin, or `host`.
    pub caller: Name,
    /// The call's id (its work id, as records show it; an event's own id).
    pub id: u64,
    /// Cancelled when the caller stops waiting; `None`: only the plugin's own token applies.
    pub token: Option<CancellationToken>,
}

thread_local! {
    /// Cancelled when the plugin this thread serves is being deactivated.
    static PLUGIN: RefCell<Option<CancellationToken>> = const { RefCell::new(None) };
    /// The current call's caller and id; `None` outside a call.
    static CALL: Cell<Option<(Name, u64)>> = const { Cell::new(None) };
    /// Whether [`TOKEN`] holds the current call's own token; while it does not (every event),
    /// [`with_stamp`] leaves it alone.
    static HAS_TOKEN: Cell<bool> = const { Cell::new(false) };
    /// The current call's own token, when it has one.
    static TOKEN: RefCell<Option<CancellationToken>> = const { RefCell::new(None) };
}

/// Marks this thread as serving a plugin whose deactivation cancels `token`.
pub(crate) fn serve_with(token: CancellationToken) {
    PLUGIN.with(|p| *p.borrow_mut() = Some(token));
}

/// Runs `f` with `stamp` as the current call's stamp.
pub(crate) fn with_stamp<R>(stamp: Option<Stamp>, f: impl FnOnce() -> R) -> R {
    let (call, token) = match stamp {
        Some(s) => (Some((s.caller, s.id)), s.token),
        None => (None, None),
    };
    let previous = CALL.replace(call);
    let previous_token = (token.is_some() || HAS_TOKEN.get()).then(|| {
        HAS_TOKEN.set(token.is_some());
        TOKEN.with(|t| t.replace(token))
    });
    let r = f();
    CALL.set(previous);
    if let Some(token) = previous_token {
        HAS_TOKEN.set(token.is_some());
        TOKEN.with(|t| *t.borrow_mut() = token);
    }
    r
}

/// The current call's whole token: its own joined with the plugin's.
fn full_token() -> CancellationToken {
    let own = if HAS_TOKEN.get() {
        TOKEN.with(|t| t.borrow().clone())
    } else {
        None
    };
    let plugin = PLUGIN.with(|p| p.borrow().clone());
    match (own, plugin) {
        (Some(own), Some(plugin)) => own.joined(&plugin),
        (Some(own), None) => own,
        (None, Some(plugin)) => plugin,
        (None, None) => CancellationToken::never(),
    }
}

/// The current call's stamp as the plugin gets it; `None` outside a call.
pub(crate) fn current() -> Option<CallStamp> {
    let (caller, id) = CALL.get()?;
    Some(CallStamp {
        caller: caller.as_str().into(),
        id,
        cancel: full_token(),
    })
}

/// The current call's caller, id and whole token (for a call that travels to a worker).
pub(crate) fn current_parts() -> Option<(String, u64, CancellationToken)> {
    current().map(|s| (s.caller.into_string(), s.id, s.cancel))
}

/// The token a call made from this thread inherits: the current call's, if any (so the calls a
/// cancelled handler made are cancelled too).
pub(crate) fn inherited() -> Option<CancellationToken> {
    CALL.get()?;
    Some(full_token())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_seen_only_during_its_call_and_joins_the_plugins_token() {
        assert!(current().is_none());
        let plugin = CancellationToken::new();
        serve_with(plugin.clone());
        let own = CancellationToken::new();
        let stamp = Stamp {
            caller: Name::new("caller"),
            id: 9,
            token: Some(own.clone()),
        };
        let seen = with_stamp(Some(stamp), || current().expect("in a call"));
        assert_eq!(seen.caller.as_str(), "caller");
        assert_eq!(seen.id, 9);
        assert!(!seen.cancel.is_cancelled());
        plugin.cancel();
        assert!(seen.cancel.is_cancelled(), "deactivation cancels the call");
        assert!(current().is_none());
    }
}
