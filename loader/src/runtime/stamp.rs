//! The stamp of the call a thread is running: who made it, its id, and its cancellation token,
//! as the host set them when it entered plugin code. The plugin's context reads them when the
//! handler asks (`Context::caller`, `Context::is_cancelled`); the plugin never writes them.
//!
//! The stamp lives in a thread-local, set by [`with_stamp`] around each entry into plugin code
//! (by `invoke` in the host, by the worker's executor for an isolated plugin). An event's stamp
//! holds no token of its own: only the plugin's, which the thread learnt once when it started
//! serving ([`serve_with`]), so a delivery costs no allocation.

use std::cell::RefCell;

use plugin_api::{CallStamp, CancellationToken};

use crate::observe::recorder::Label;

/// What the host knows of a call when it enters plugin code.
pub(crate) struct Stamp {
    /// The calling plugin, or `host`.
    pub caller: Label,
    /// The call's id (its work id, as records show it).
    pub id: u64,
    /// Cancelled when the caller stops waiting; `None`: only the plugin's own token applies.
    pub token: Option<CancellationToken>,
}

struct Current {
    /// Cancelled when the plugin this thread serves is being deactivated.
    plugin: Option<CancellationToken>,
    call: Option<Stamp>,
}

thread_local! {
    static CURRENT: RefCell<Current> = const {
        RefCell::new(Current {
            plugin: None,
            call: None,
        })
    };
}

/// Marks this thread as serving a plugin whose deactivation cancels `token`.
pub(crate) fn serve_with(token: CancellationToken) {
    CURRENT.with(|c| c.borrow_mut().plugin = Some(token));
}

/// Runs `f` with `stamp` as the current call's stamp.
pub(crate) fn with_stamp<R>(stamp: Option<Stamp>, f: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|c| std::mem::replace(&mut c.borrow_mut().call, stamp));
    let r = f();
    CURRENT.with(|c| c.borrow_mut().call = previous);
    r
}

fn full_token(current: &Current, own: Option<&CancellationToken>) -> CancellationToken {
    match (own, &current.plugin) {
        (Some(own), Some(plugin)) => own.joined(plugin),
        (Some(own), None) => own.clone(),
        (None, Some(plugin)) => plugin.clone(),
        (None, None) => CancellationToken::never(),
    }
}

/// The current call's stamp as the plugin gets it; `None` outside a call.
pub(crate) fn current() -> Option<CallStamp> {
    CURRENT.with(|c| {
        let c = c.borrow();
        let call = c.call.as_ref()?;
        Some(CallStamp {
            caller: call.caller.as_str().into(),
            id: call.id,
            cancel: full_token(&c, call.token.as_ref()),
        })
    })
}

/// The current call's caller, id and whole token (for a call that travels to a worker).
pub(crate) fn current_parts() -> Option<(String, u64, CancellationToken)> {
    current().map(|s| (s.caller.into_string(), s.id, s.cancel))
}

/// The token a call made from this thread inherits: the current call's, if any (so the calls a
/// cancelled handler made are cancelled too).
pub(crate) fn inherited() -> Option<CancellationToken> {
    CURRENT.with(|c| {
        let c = c.borrow();
        let call = c.call.as_ref()?;
        Some(full_token(&c, call.token.as_ref()))
    })
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
            caller: Label::new("caller"),
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
