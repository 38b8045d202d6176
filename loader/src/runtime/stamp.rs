//! The stamp of the call a thread is running: who made it, its id, and its cancellation token,
//! as the host set them when it entered plugin code. The plugin's context reads them when the
//! handler asks (`Context::caller`, `Context::is_cancelled`); the plugin never writes them.
//!
//! The stamp lives in thread-locals, set by [`enter`] around each entry into plugin code (by
//! `invoke` in the host, by the worker's executor for an isolated plugin) and put back when the
//! returned [`Stamped`] is dropped. The caller's name is copied in place into a buffer the
//! thread keeps, so a stamp costs a copy of the name's bytes and no allocation. An event's
//! stamp holds no token of its own: only the plugin's, which the thread learnt once when it
//! started serving ([`serve_with`]).

use std::cell::{Cell, RefCell};

use plugin_api::{CallStamp, CancellationToken};

/// The longest caller name a stamp keeps: plugin names are at most 64 bytes (and the host is
/// `host`).
const NAME_MAX: usize = 64;

/// A caller's name as plain bytes, so that it can live in a thread-local without a destructor
/// (whose lazy set-up would cost every call a few dozen instructions).
#[derive(Clone, Copy)]
struct Name {
    len: u8,
    bytes: [u8; NAME_MAX],
}

impl Name {
    const EMPTY: Name = Name {
        len: 0,
        bytes: [0; NAME_MAX],
    };

    /// Becomes `name`, cut at [`NAME_MAX`] bytes on a character boundary (names are never
    /// longer). Only the name's own bytes are written.
    fn set(&mut self, name: &str) {
        let mut end = name.len().min(NAME_MAX);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        self.len = end as u8;
    }

    fn as_str(&self) -> &str {
        // Copied from a `str` up to a character boundary: always UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// What the host knows of a call when it enters plugin code.
pub(crate) struct Stamp<'a> {
    /// The calling plugin, or `host`.
    pub caller: &'a str,
    /// The call's id (its work id, as records show it; an event's own id).
    pub id: u64,
    /// Cancelled when the caller stops waiting; `None`: only the plugin's own token applies.
    pub token: Option<CancellationToken>,
}

thread_local! {
    /// Cancelled when the plugin this thread serves is being deactivated.
    static PLUGIN: RefCell<Option<CancellationToken>> = const { RefCell::new(None) };
    /// The current call's id; `None` outside a call.
    static CALL: Cell<Option<u64>> = const { Cell::new(None) };
    /// The current call's caller (meaningful while [`CALL`] is set).
    static CALLER: RefCell<Name> = const { RefCell::new(Name::EMPTY) };
    /// Whether [`TOKEN`] holds the current call's own token; while it does not (every event),
    /// [`enter`] leaves it alone.
    static HAS_TOKEN: Cell<bool> = const { Cell::new(false) };
    /// The current call's own token, when it has one.
    static TOKEN: RefCell<Option<CancellationToken>> = const { RefCell::new(None) };
}

/// Marks this thread as serving a plugin whose deactivation cancels `token`.
pub(crate) fn serve_with(token: CancellationToken) {
    PLUGIN.with(|p| *p.borrow_mut() = Some(token));
}

/// The stamp that was current before [`enter`]; dropping it makes it current again.
#[must_use = "the stamp lasts until this is dropped"]
pub(crate) struct Stamped {
    /// The call that was running on this thread already (plugin code never nests on its own
    /// thread, so this is `None` but for the host's own nested uses).
    previous: Option<(Name, u64)>,
    /// The token the thread held before, when this stamp replaced it.
    previous_token: Option<Option<CancellationToken>>,
}

/// Makes `stamp` the current call's stamp (`None`: no call, as for lifecycle calls) until the
/// returned value is dropped.
pub(crate) fn enter(stamp: Option<Stamp<'_>>) -> Stamped {
    let previous = CALL.get().map(|id| (CALLER.with(|c| *c.borrow()), id));
    let token = match stamp {
        Some(s) => {
            CALLER.with(|c| c.borrow_mut().set(s.caller));
            CALL.set(Some(s.id));
            s.token
        }
        None => {
            CALL.set(None);
            None
        }
    };
    let previous_token = (token.is_some() || HAS_TOKEN.get()).then(|| {
        HAS_TOKEN.set(token.is_some());
        TOKEN.with(|t| t.replace(token))
    });
    Stamped {
        previous,
        previous_token,
    }
}

impl Drop for Stamped {
    fn drop(&mut self) {
        match self.previous.take() {
            Some((name, id)) => {
                CALLER.with(|c| *c.borrow_mut() = name);
                CALL.set(Some(id));
            }
            None => CALL.set(None),
        }
        if let Some(token) = self.previous_token.take() {
            HAS_TOKEN.set(token.is_some());
            TOKEN.with(|t| *t.borrow_mut() = token);
        }
    }
}

/// The stamp of a run of events on one thread ([`events`]): each event's stamp is set in place
/// ([`EventStamps::set`]) and cleared after its handler ([`EventStamps::clear`]), without the
/// save and restore that [`enter`] makes around every call. The stamp that was current before
/// the run (none, on a plugin's own thread) is current again when this is dropped.
#[must_use = "the run's stamps last until this is dropped"]
pub(crate) struct EventStamps {
    _outer: Stamped,
}

/// Starts a run of event stamps. Events carry no token of their own, so the run holds none:
/// only the plugin's applies.
pub(crate) fn events() -> EventStamps {
    EventStamps {
        _outer: enter(None),
    }
}

impl EventStamps {
    /// Stamps the event about to be handled: its source and its id.
    pub fn set(&mut self, caller: &str, id: u64) {
        CALLER.with(|c| c.borrow_mut().set(caller));
        CALL.set(Some(id));
    }

    /// The handler returned: no call is current until the next [`EventStamps::set`].
    pub fn clear(&mut self) {
        CALL.set(None);
    }
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
    let id = CALL.get()?;
    Some(CallStamp {
        caller: CALLER.with(|c| c.borrow().as_str().into()),
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
            caller: "caller",
            id: 9,
            token: Some(own.clone()),
        };
        let stamped = enter(Some(stamp));
        let seen = current().expect("in a call");
        drop(stamped);
        assert_eq!(seen.caller.as_str(), "caller");
        assert_eq!(seen.id, 9);
        assert!(!seen.cancel.is_cancelled());
        plugin.cancel();
        assert!(seen.cancel.is_cancelled(), "deactivation cancels the call");
        assert!(current().is_none());
    }

    #[test]
    fn a_nested_stamp_gives_the_outer_one_back_whole() {
        let long = "a-caller-with-a-long-name";
        let outer = enter(Some(Stamp {
            caller: long,
            id: 1,
            token: None,
        }));
        {
            let _inner = enter(Some(Stamp {
                caller: "b",
                id: 2,
                token: Some(CancellationToken::new()),
            }));
            let inner = current().expect("inner call");
            assert_eq!((inner.caller.as_str(), inner.id), ("b", 2));
            let _none = enter(None);
            assert!(current().is_none(), "a lifecycle call has no stamp");
        }
        let back = current().expect("outer call");
        assert_eq!((back.caller.as_str(), back.id), (long, 1));
        drop(outer);
        assert!(current().is_none());
    }

    #[test]
    fn a_run_of_event_stamps_is_seen_per_event_and_gives_the_outer_stamp_back() {
        let outer = enter(Some(Stamp {
            caller: "outer",
            id: 1,
            token: Some(CancellationToken::new()),
        }));
        {
            let mut run = events();
            assert!(current().is_none(), "between events no call is current");
            run.set("publisher", 7);
            let seen = current().expect("in an event");
            assert_eq!((seen.caller.as_str(), seen.id), ("publisher", 7));
            run.clear();
            assert!(current().is_none());
            run.set("other", 8);
            assert_eq!(current().expect("next event").caller.as_str(), "other");
        }
        let back = current().expect("outer call");
        assert_eq!((back.caller.as_str(), back.id), ("outer", 1));
        drop(outer);
        assert!(current().is_none());
    }

    #[test]
    fn names_are_cut_on_a_character_boundary() {
        let mut name = Name::EMPTY;
        let long = "é".repeat(40);
        name.set(&long);
        assert_eq!(name.as_str(), "é".repeat(32));
        name.set("host");
        assert_eq!(name.as_str(), "host");
    }
}
