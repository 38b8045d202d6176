//! One plugin's mailbox and dispatcher thread.
//!
//! Each active plugin owns a thread that owns its instance. Work reaches it through two bounded
//! crossbeam channels: requests (commands, messages, RPC, hooks, middleware, provider calls),
//! which refuse new work with a queue-full error when full, and events, which drop the oldest
//! queued event (counted) so a slow subscriber never blocks a publisher. The thread blocks on
//! the channels: an idle plugin costs no CPU.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, RwLock};
use plugin_api::{
    CancellationToken, ErrorKind, Event, HostContextBox, Payload, PluginError, PluginInstanceBox,
    PluginModRef,
};

use super::{call::Call, chain::Chain, clock::Clock, reply::ReplyTo};
use crate::observe::{
    metrics::Metrics,
    recorder::{Label, RecordKind},
};

/// Work for a plugin's thread. Dropping a job unrun drops its reply, which its caller sees as
/// "cancelled".
pub(crate) struct Job {
    /// Callers blocked on this job.
    pub chain: Chain,
    /// Id of this unit of work (the parent of what the handler does).
    pub work: u64,
    /// What to run.
    pub call: Call,
    /// What kind of call it is and its name, for records and messages.
    pub kind: RecordKind,
    pub name: Label,
    /// The caller's part of the record, when recording.
    pub record: Option<(u64, Label, u64)>,
    /// Who made the call (a plugin's name, or `host`), as the handler learns it.
    pub caller: Label,
    /// Cancelled when the caller stops waiting (the slot's own token is added on top).
    pub cancel: CancellationToken,
    /// Where the answer goes; `None` for a message nobody waits for.
    pub reply: Option<ReplyTo>,
}

/// Where a subscriber's answer to `emit_and_collect` goes: (plugin, result).
pub(crate) type CollectSender = Sender<(Arc<str>, Result<Payload, PluginError>)>;

/// An event on its way to one subscriber. Three words: the queues' slots stay small, so a
/// publisher writes fewer cache lines per delivery.
pub(crate) struct Delivery {
    pub event: Arc<Event>,
    pub chain: Chain,
    /// Present for `emit_and_collect`.
    pub reply: Option<Box<CollectSender>>,
}

/// What a new instance is made from: the library's module and the context it gets.
pub(crate) struct Fresh {
    /// `None` for a plugin whose library the host never opened (it runs isolated).
    pub module: Option<PluginModRef>,
    pub context: HostContextBox,
    /// Retires `context` when the instance made from it ends.
    pub seal: Seal,
    /// Set when the instance is to live in a child process (process isolation): what makes
    /// it there, in place of `module`'s constructor. The runtime does not know how.
    pub remote: Option<MakeRemote>,
}

/// Makes an instance in a child process from the context it will serve.
pub(crate) type MakeRemote = Box<dyn FnOnce(HostContextBox) -> Result<Remote, PluginError> + Send>;

/// An instance made in a child process, and its way of taking events ahead.
pub(crate) struct Remote {
    pub instance: PluginInstanceBox,
    pub ahead: Arc<dyn SendAhead>,
}

/// An instance that can be handed a run of queued events in one go, before they are delivered
/// one by one: for one in a child process, the run is a single write to its pipe instead of a
/// round trip per event.
///
/// The deliveries still go through `invoke`, one per event and in the same order, with the
/// same accounting; the instance waits for each one's answer instead of sending it.
pub(crate) trait SendAhead: Send + Sync {
    /// Hands `events` over, in order. Each must then be delivered, in that order, before any
    /// other call reaches the instance (the instance drops the answers of any not delivered).
    fn send_ahead(&self, events: &[Arc<Event>]);
}

/// Orders for the thread itself.
pub(crate) enum Control {
    /// Cancel queued work, deactivate and drop the instance, exit.
    Stop {
        done: Sender<Result<(), PluginError>>,
    },
    /// Replace a faulted instance with a fresh one (no state handoff), same thread and queues.
    Restart {
        next: Box<Fresh>,
        done: Sender<Result<(), PluginError>>,
    },
    /// Replace the instance (hot reload): finish the current job, hand over state, go on with
    /// the same queues.
    Swap {
        next: Box<Fresh>,
        from_version: String,
        done: Sender<Result<(), PluginError>>,
    },
}

/// Shared by a context and the instance it was made for: once the instance ends (deactivated,
/// replaced, restarted, or given up on), the context refuses every call.
///
/// Each seal has an id, increasing with every instance made in this process: the run-time
/// registrations an instance makes are held under it, so that the next instance's
/// registrations replace (and outlive) the previous one's.
#[derive(Clone)]
pub(crate) struct Seal(Arc<(AtomicBool, u64)>);

impl Default for Seal {
    fn default() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Seal(Arc::new((
            AtomicBool::new(false),
            NEXT.fetch_add(1, Ordering::Relaxed),
        )))
    }
}

impl Seal {
    /// Retires the context.
    pub fn retire(&self) {
        self.0 .0.store(true, Ordering::Release);
    }

    /// Whether the context was retired.
    pub fn is_retired(&self) -> bool {
        self.0 .0.load(Ordering::Acquire)
    }

    /// The instance's id (see above).
    pub fn id(&self) -> u64 {
        self.0 .1
    }
}

/// Senders into the plugin's queues; `None` once the plugin stops taking work.
pub(crate) struct Mailbox {
    pub jobs: Sender<Job>,
    pub events: Sender<Delivery>,
}

/// A fault reported to the supervisor.
pub(crate) struct Fault {
    pub plugin: String,
    pub reason: String,
    /// The plugin's thread may still be stuck in plugin code (a missed deadline).
    pub stuck: bool,
}

/// Lifecycle state of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// Library loaded and checked, not yet active.
    Loaded,
    /// Serving.
    Active,
    /// Could not be loaded or activated.
    Failed,
    /// Active, but a handler panicked or missed a deadline.
    Faulted,
    /// Stopped.
    Deactivated,
    /// Stopped after repeated faults; stays off until re-enabled.
    Quarantined,
    /// Switched off in the host config (`enabled = false`).
    Disabled,
}

impl PluginState {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Loaded => "loaded",
            PluginState::Active => "active",
            PluginState::Failed => "failed",
            PluginState::Faulted => "faulted",
            PluginState::Deactivated => "deactivated",
            PluginState::Quarantined => "quarantined",
            PluginState::Disabled => "disabled",
        }
    }

    /// Whether the plugin takes work in this state.
    pub fn is_serving(self) -> bool {
        matches!(self, PluginState::Active | PluginState::Faulted)
    }
}

impl std::fmt::Display for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin as the dispatcher sees it.
///
/// What publishers write (the mailbox lock) and what the plugin's own thread writes (its
/// metrics) sit on cache lines of their own, apart from what the thread reads on every turn:
/// otherwise every delivery would move those lines between CPUs.
pub(crate) struct Slot {
    pub name: Arc<str>,
    pub mailbox: CachePadded<RwLock<Option<Mailbox>>>,
    /// Set (before the mailbox is emptied) when the plugin stops taking work.
    closed: CachePadded<AtomicBool>,
    /// Cancelled with `closed`: every call the plugin runs then reads as cancelled.
    pub stopping: CancellationToken,
    pub control: Sender<Control>,
    pub(super) control_rx: Receiver<Control>,
    /// Bumped when a faulted plugin gets a fresh instance on a new thread; an older thread
    /// exits as soon as it is free.
    pub generation: AtomicU64,
    faults: Sender<Fault>,
    /// Threads given up on while stuck in this host's plugin code (shared by all slots).
    detached: Arc<AtomicU64>,
    /// The host's ids (delivery records take theirs from it).
    pub(super) clock: Arc<Clock>,
    pub(super) jobs_rx: Receiver<Job>,
    pub(super) events_rx: Receiver<Delivery>,
    pub state: RwLock<PluginState>,
    pub last_error: Mutex<Option<String>>,
    pub metrics: CachePadded<Metrics>,
    /// Whether the plugin's thread is running work now (for [`Slot::is_idle`]).
    pub(super) busy: CachePadded<AtomicBool>,
    /// `max_payload_bytes`: the largest answer that may leave the plugin's thread.
    pub(super) limit: usize,
    /// Whether the instance lives in a child process: its answers take tens of microseconds,
    /// and its callers poll longer before they sleep ([`Waiter::wait`](super::reply::Waiter::wait)).
    remote: AtomicBool,
    event_capacity: usize,
    job_capacity: usize,
}

/// Error returned when work cannot be queued.
pub(crate) fn not_serving(name: &str) -> PluginError {
    PluginError::new(
        ErrorKind::Cancelled,
        format!("plugin {name} is not active (deactivated or reloading away)"),
    )
}

impl Slot {
    /// A slot with empty queues of the given bounds, and the receiving ends for its thread.
    pub fn new(
        name: &str,
        job_capacity: usize,
        event_capacity: usize,
        (faults, detached, clock): (Sender<Fault>, Arc<AtomicU64>, Arc<Clock>),
        limit: usize,
    ) -> Arc<Slot> {
        let (jobs_tx, jobs_rx) = bounded(job_capacity.max(1));
        let (events_tx, events_rx) = bounded(event_capacity.max(1));
        let (control_tx, control_rx) = bounded(4);
        Arc::new(Slot {
            name: Arc::from(name),
            closed: CachePadded::new(AtomicBool::new(false)),
            stopping: CancellationToken::new(),
            mailbox: CachePadded::new(RwLock::new(Some(Mailbox {
                jobs: jobs_tx,
                events: events_tx,
            }))),
            control: control_tx,
            control_rx,
            generation: AtomicU64::new(0),
            faults,
            detached,
            clock,
            jobs_rx,
            events_rx,
            state: RwLock::new(PluginState::Loaded),
            last_error: Mutex::new(None),
            metrics: CachePadded::new(Metrics::default()),
            busy: CachePadded::new(AtomicBool::new(false)),
            limit,
            remote: AtomicBool::new(false),
            event_capacity: event_capacity.max(1),
            job_capacity: job_capacity.max(1),
        })
    }

    /// Whether the current instance lives in a child process.
    pub fn is_remote(&self) -> bool {
        self.remote.load(Ordering::Relaxed)
    }

    /// Says where the instance made now lives.
    pub(super) fn set_remote(&self, remote: bool) {
        self.remote.store(remote, Ordering::Relaxed);
    }

    /// Current state.
    pub fn state(&self) -> PluginState {
        *self.state.read()
    }

    /// Queues a job, or refuses it at once.
    pub fn submit(&self, job: Job) -> Result<(), PluginError> {
        let guard = self.mailbox.read();
        let Some(mailbox) = guard.as_ref() else {
            return Err(not_serving(&self.name));
        };
        match mailbox.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.metrics.queue_full.fetch_add(1, Ordering::Relaxed);
                Err(PluginError::new(
                    ErrorKind::QueueFull,
                    format!(
                        "queue of plugin {} is full ({} requests waiting)",
                        self.name, self.job_capacity
                    ),
                ))
            }
            Err(TrySendError::Disconnected(_)) => Err(not_serving(&self.name)),
        }
    }

    /// Queues an event, dropping the oldest queued one if the queue is full (counted in the
    /// metrics). Returns the dropped event, if any, or `Err` if the plugin takes no more work.
    pub fn deliver(&self, mut delivery: Delivery) -> Result<Option<Arc<Event>>, ()> {
        let guard = self.mailbox.read();
        let mailbox = guard.as_ref().ok_or(())?;
        let mut dropped = None;
        loop {
            match mailbox.events.try_send(delivery) {
                Ok(()) => return Ok(dropped),
                Err(TrySendError::Full(back)) => {
                    delivery = back;
                    if let Ok(old) = self.events_rx.try_recv() {
                        let total = self.metrics.events_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        if total.is_power_of_two() {
                            log::warn!(
                                "plugin {} is falling behind: {total} events dropped so far (queue of {}), latest dropped {} #{}",
                                self.name, self.event_capacity, old.event.event_type, old.event.id
                            );
                        }
                        dropped = Some(old.event);
                    }
                }
                Err(TrySendError::Disconnected(_)) => return Err(()),
            }
        }
    }

    /// Requests and events waiting.
    pub fn queue_depth(&self) -> (usize, usize) {
        (self.jobs_rx.len(), self.events_rx.len())
    }

    /// Whether nothing is queued for the plugin and its thread runs no work.
    pub fn is_idle(&self) -> bool {
        self.jobs_rx.is_empty() && self.events_rx.is_empty() && !self.busy.load(Ordering::Acquire)
    }

    /// Calls and events this plugin's thread has finished so far.
    pub fn work_done(&self) -> u64 {
        self.metrics.calls_served.load(Ordering::Relaxed)
            + self.metrics.events_handled.load(Ordering::Relaxed)
    }

    /// Whether the plugin stopped taking work (deactivation has begun).
    pub fn is_closed(&self) -> bool {
        // A plain load: the dispatcher thread asks on every turn, and taking the mailbox's lock
        // there would bounce its cache line against every publisher.
        self.closed.load(Ordering::Acquire)
    }

    /// Stops taking new work: later submits fail at once.
    pub fn close(&self) {
        let mut mailbox = self.mailbox.write();
        self.closed.store(true, Ordering::Release);
        self.stopping.cancel();
        mailbox.take();
    }

    /// Marks a handler fault (a panic, or a missed host deadline) and reports it to the
    /// supervisor, which restarts or quarantines the plugin.
    pub fn mark_faulted(&self, why: String, stuck: bool) {
        {
            let mut state = self.state.write();
            if *state == PluginState::Active {
                *state = PluginState::Faulted;
            }
        }
        *self.last_error.lock() = Some(why.clone());
        let _ = self.faults.send(Fault {
            plugin: self.name.to_string(),
            reason: why,
            stuck,
        });
    }

    /// The error for an answer of `size` bytes from entry point `entry`, if that exceeds the
    /// reply size limit.
    pub fn over_limit(&self, entry: &str, size: usize) -> Option<PluginError> {
        (size > self.limit).then(|| {
            PluginError::invalid(format!(
                "plugin {}: {entry} answered {size} bytes, which exceeds the limit of {} bytes",
                self.name, self.limit
            ))
        })
    }

    /// Reports a panic of entry point `entry` (`error`, from the fence) as the plugin's fault.
    pub fn fault_of(&self, entry: &str, error: &PluginError) {
        self.mark_faulted(
            format!("{entry} of plugin {} panicked: {error}", self.name),
            false,
        );
    }

    /// Counts a thread left behind in plugin code.
    pub fn detach(&self) {
        self.detached.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn cancel_queued(&self) -> usize {
        let mut n = 0;
        // Dropping a job drops its reply sender: the waiting caller sees "cancelled".
        while let Ok(job) = self.jobs_rx.try_recv() {
            drop(job);
            n += 1;
        }
        while self.events_rx.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}
