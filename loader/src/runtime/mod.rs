//! One plugin's running instance: its queues, its thread, and how calls reach it and answers
//! come back.
//!
//! 1. [`call`]: `Call` and `Answer`, the host's requests to an instance as data, and `invoke`,
//!    the one function that enters plugin code.
//! 2. [`chain`]: the wait chain that refuses call cycles.
//! 3. [`clock`]: the host's ids and the wall-clock stamps of events.
//! 4. [`slot`]: the plugin's queues, state, and the seal that retires its context.
//! 5. [`serve`]: the plugin's thread, which takes work from the slot and invokes it.
//! 6. [`instance`]: the instance that thread holds, and the lifecycle orders it carries out
//!    (stop, swap with state handoff, restart, retiring the old instance).
//! 7. [`reply`]: reply ports, one reused per calling thread.
//! 8. [`stamp`]: who made the call a thread runs, its id and its cancellation token.
//! 9. [`timer`]: the host's timer thread, which queues timer events on plugins' threads.
pub(crate) mod call;
pub(crate) mod chain;
pub(crate) mod clock;
pub(crate) mod instance;
pub(crate) mod reply;
pub(crate) mod serve;
pub(crate) mod slot;
pub(crate) mod stamp;
pub(crate) mod timer;

use crate::observe::recorder::RecordKind;

/// How a kind of call reads in a message ("command greeter:greet").
pub(crate) fn kind_word(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Event => "event",
        RecordKind::Delivery => "delivery of",
        RecordKind::Command => "command",
        RecordKind::Message => "message",
        RecordKind::Rpc => "call",
        RecordKind::Hook => "hook",
        RecordKind::Middleware => "middleware",
        RecordKind::Provider => "provider",
    }
}
