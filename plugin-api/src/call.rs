//! Who is calling, whether the caller still waits, and timers (added in 1.1).
//!
//! The host stamps every call it makes into a plugin (commands, RPC, messages, provider
//! methods, hooks, middleware, events) with its caller and id, and a [`CancellationToken`] that
//! it cancels when nobody waits for the answer any more. A handler reads them through
//! [`Context::caller`](crate::Context::caller), [`Context::is_cancelled`](crate::Context::is_cancelled)
//! and [`Context::cancellation`](crate::Context::cancellation). Timers
//! ([`Context::every`](crate::Context::every), [`Context::after`](crate::Context::after)) are
//! the host's: it queues their events on the plugin's own thread.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use abi_stable::{
    std_types::{RArc, RString, RVec},
    StableAbi,
};

use crate::abi::HostContextBox;

/// Tells a long handler that nobody waits for its answer any more.
///
/// The host cancels a call when its caller's deadline passes, when the call it was made from is
/// cancelled, and when the plugin is being deactivated. Cloning is cheap (a few reference
/// counts), and a clone may move to another thread: a worker the handler starts can poll it.
///
/// Cancellation is a request, not a kill: the handler stops when it next looks. What it returns
/// after that goes nowhere (the caller has its timeout or cancellation error already), and the
/// host does not count it as a late reply.
///
/// # Examples
/// ```
/// use plugin_api::CancellationToken;
///
/// let token = CancellationToken::new();
/// let seen_by_worker = token.clone();
/// assert!(!seen_by_worker.is_cancelled());
/// token.cancel();
/// assert!(seen_by_worker.is_cancelled());
/// assert!(!CancellationToken::never().is_cancelled());
/// ```
#[repr(C)]
#[derive(StableAbi, Clone, Default)]
pub struct CancellationToken {
    /// The token's own flag first (what [`CancellationToken::cancel`] sets), then the flags of
    /// what it was joined with: it is cancelled when any of them is set.
    flags: RVec<RArc<AtomicBool>>,
}

impl std::fmt::Debug for CancellationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancellationToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancellationToken {
    /// A token of its own, not cancelled yet.
    pub fn new() -> Self {
        let mut flags = RVec::with_capacity(1);
        flags.push(RArc::new(AtomicBool::new(false)));
        CancellationToken { flags }
    }

    /// A token that is never cancelled (what a handler sees outside a call, or on a host
    /// older than 1.1).
    pub fn never() -> Self {
        CancellationToken { flags: RVec::new() }
    }

    /// This token, also cancelled when `other` is.
    #[must_use]
    pub fn joined(&self, other: &CancellationToken) -> Self {
        let mut flags = RVec::with_capacity(self.flags.len() + other.flags.len());
        flags.extend(self.flags.iter().cloned());
        flags.extend(other.flags.iter().cloned());
        CancellationToken { flags }
    }

    /// Cancels this token (and every clone of it, and every token joined with it). A token made
    /// by [`CancellationToken::never`] cannot be cancelled.
    pub fn cancel(&self) {
        if let Some(own) = self.flags.first() {
            own.store(true, Ordering::Release);
        }
    }

    /// Whether the token was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.flags.iter().any(|f| f.load(Ordering::Acquire))
    }
}

/// What the host tells a plugin about the call it is running (the raw form of [`Caller`]).
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct CallStamp {
    /// The calling plugin's name, or `host`.
    pub caller: RString,
    /// The call's id: the id of its record in the host's trace (for an event, its delivery).
    pub id: u64,
    /// Cancelled when nobody waits for the answer any more.
    pub cancel: CancellationToken,
}

/// Who made the call a handler is running, as the host stamped it (a plugin cannot forge it).
///
/// # Examples
/// ```
/// use plugin_api::prelude::*;
///
/// fn whoami(ctx: &Context) -> String {
///     match ctx.caller() {
///         Some(caller) if caller.is_host() => format!("the host, call #{}", caller.id()),
///         Some(caller) => format!("plugin {}, call #{}", caller.name(), caller.id()),
///         None => "not in a call".to_owned(),
///     }
/// }
/// # let _ = whoami;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    name: String,
    id: u64,
}

impl Caller {
    pub(crate) fn from_stamp(stamp: &CallStamp) -> Self {
        Caller {
            name: stamp.caller.as_str().to_owned(),
            id: stamp.id,
        }
    }

    /// The calling plugin's name, or `host` (the host application, and the host's timers).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the host application (or one of its timers) made the call.
    pub fn is_host(&self) -> bool {
        self.name == "host"
    }

    /// The call's id, as the host's trace (`demo-app trace`) shows it.
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// A timer started by [`Context::every`](crate::Context::every) or
/// [`Context::after`](crate::Context::after). Dropping it stops the timer; so does
/// [`Timer::cancel`]. Every timer of a plugin stops when the plugin is deactivated, kept or not.
///
/// Keep it in the plugin's state for as long as the timer should run.
#[must_use = "dropping a Timer stops it at once"]
pub struct Timer {
    context: Arc<HostContextBox>,
    id: u64,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer").field("id", &self.id).finish()
    }
}

impl Timer {
    pub(crate) fn new(context: Arc<HostContextBox>, id: u64) -> Self {
        Timer { context, id }
    }

    /// The host's id of this timer.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Stops the timer (as dropping it does).
    pub fn cancel(self) {
        drop(self);
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.context.stop_timer(self.id);
    }
}

/// Milliseconds of `d`, at least 1.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
