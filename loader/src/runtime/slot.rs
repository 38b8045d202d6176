//! One plugin's mailbox and dispatcher thread.
//!
//! Each active plugin owns a thread that owns its instance. Work reaches it through two bounded
//! crossbeam channels: requests (commands, messages, RPC, hooks, middleware, provider calls),
//! which refuse new work with a queue-full error when full, and events, which drop the oldest
//! queued event (counted) so a slow subscriber never blocks a publisher. The thread blocks on
//! the channels: an idle plugin costs no CPU.

use std::{
    cell::RefCell,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crossbeam_channel::{bounded, select, Receiver, Sender, TrySendError};
use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, RwLock};
use plugin_api::{ErrorKind, Event, Payload, PluginError, PluginInstanceBox};

use crate::{
    observe::metrics::Metrics,
    observe::recorder::{Entry, Label, Outcome, RecordKind, Recorder},
};

/// The plugins whose dispatcher threads are blocked waiting on the current call, outermost
/// first. Used to refuse call cycles instead of deadlocking. Empty (the common case: the host
/// application calling) costs nothing to clone or share between threads.
#[derive(Clone, Default, Debug)]
pub(crate) struct Chain(Option<Arc<Vec<Arc<str>>>>);

impl Chain {
    /// No blocked callers.
    pub fn empty() -> Chain {
        Chain(None)
    }

    /// The blocked callers, outermost first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().flat_map(|c| c.iter())
    }

    /// This chain with `name` appended.
    pub fn with(&self, name: &Arc<str>) -> Chain {
        let mut v: Vec<Arc<str>> = self.iter().cloned().collect();
        v.push(name.clone());
        Chain(Some(Arc::new(v)))
    }
}

/// Work for a plugin's thread. Dropping a job unrun drops its reply sender, which its caller
/// sees as "cancelled".
pub(crate) struct Job {
    /// Callers blocked on this job.
    pub chain: Chain,
    /// Id of this unit of work (for event parent links).
    pub work_id: u64,
    /// Runs on the plugin thread; returns the error kind if the call failed, and the time it
    /// finished if it read the clock (so it is read once).
    pub run: JobRun,
}

/// The body of a job.
pub(crate) enum JobRun {
    /// A command, carried without an allocation.
    Command(crate::dispatch::CommandJob),
    /// Any other call.
    Boxed(JobFn),
}

/// What a job gets from the thread that runs it. A job borrows these instead of carrying its
/// own references: a reference count taken on the caller's CPU and dropped on the plugin's
/// would move its cache line between them on every call.
pub(crate) struct JobEnv<'a> {
    /// When the thread started the job.
    pub started: Instant,
    /// The plugin's slot.
    pub slot: &'a Slot,
    /// The host's flight recorder.
    pub recorder: &'a Recorder,
    /// The plugin's name, as records keep it.
    pub plugin: &'a Label,
}

/// The body of a job other than a command.
pub(crate) type JobFn = Box<
    dyn FnOnce(&mut PluginInstanceBox, &JobEnv<'_>) -> (Option<ErrorKind>, Option<Instant>) + Send,
>;

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

/// Orders for the thread itself.
pub(crate) enum Control {
    /// Cancel queued work, call `deactivate`, exit.
    Stop {
        done: Sender<Result<(), PluginError>>,
    },
    /// Replace a faulted instance with a fresh one (no state handoff), same thread and queues.
    Restart {
        next: Box<PluginInstanceBox>,
        done: Sender<Result<(), PluginError>>,
    },
    /// Replace the instance (hot reload): finish the current job, hand over state, go on with
    /// the same queues.
    Swap {
        next: Box<PluginInstanceBox>,
        from_version: String,
        done: Sender<Result<(), PluginError>>,
    },
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
    pub control: Sender<Control>,
    control_rx: Receiver<Control>,
    /// Bumped when a faulted plugin gets a fresh instance on a new thread; an older thread
    /// exits as soon as it is free.
    pub generation: AtomicU64,
    faults: Sender<Fault>,
    jobs_rx: Receiver<Job>,
    events_rx: Receiver<Delivery>,
    pub state: RwLock<PluginState>,
    pub last_error: Mutex<Option<String>>,
    pub metrics: CachePadded<Metrics>,
    event_capacity: usize,
    job_capacity: usize,
}

/// What the current thread is doing, when it is a plugin's dispatcher thread.
struct Current {
    /// The plugin whose thread this is (set once when the thread starts serving).
    plugin: Option<Arc<str>>,
    /// Whether a job or event is being handled now, with its callers and work id.
    busy: Option<(Chain, u64)>,
}

thread_local! {
    static CURRENT: RefCell<Current> = const {
        RefCell::new(Current {
            plugin: None,
            busy: None,
        })
    };
}

/// If the current thread is `plugin`'s dispatcher thread busy with a job: the chain of blocked
/// callers including `plugin` itself, and the job's work id.
pub(crate) fn current_chain(plugin: &str) -> (Chain, u64) {
    CURRENT.with(|c| {
        let c = c.borrow();
        match (&c.plugin, &c.busy) {
            (Some(name), Some((chain, work))) if &**name == plugin => (chain.with(name), *work),
            _ => (Chain::empty(), 0),
        }
    })
}

/// Marks this thread as `plugin`'s dispatcher thread.
fn serve_as(plugin: &Arc<str>) {
    CURRENT.with(|c| c.borrow_mut().plugin = Some(plugin.clone()));
}

/// Runs `f` (a handler) with the thread marked busy with work `work` for the callers `chain`.
fn with_current<R>(chain: Chain, work: u64, f: impl FnOnce() -> R) -> R {
    CURRENT.with(|c| c.borrow_mut().busy = Some((chain, work)));
    let r = f();
    CURRENT.with(|c| c.borrow_mut().busy = None);
    r
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
        faults: Sender<Fault>,
    ) -> Arc<Slot> {
        let (jobs_tx, jobs_rx) = bounded(job_capacity.max(1));
        let (events_tx, events_rx) = bounded(event_capacity.max(1));
        let (control_tx, control_rx) = bounded(4);
        Arc::new(Slot {
            name: Arc::from(name),
            closed: CachePadded::new(AtomicBool::new(false)),
            mailbox: CachePadded::new(RwLock::new(Some(Mailbox {
                jobs: jobs_tx,
                events: events_tx,
            }))),
            control: control_tx,
            control_rx,
            generation: AtomicU64::new(0),
            faults,
            jobs_rx,
            events_rx,
            state: RwLock::new(PluginState::Loaded),
            last_error: Mutex::new(None),
            metrics: CachePadded::new(Metrics::default()),
            event_capacity: event_capacity.max(1),
            job_capacity: job_capacity.max(1),
        })
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
        mailbox.take();
    }

    /// Marks a handler fault (panic or missed deadline).
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

    fn cancel_queued(&self) -> usize {
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

/// The body of a plugin's dispatcher thread, once its instance is active.
/// What the dispatcher thread takes next.
enum Work {
    Order(Control),
    Call(Job),
    Event(Delivery),
    /// The queues are closed and the order channel is gone: exit.
    Exit,
}

/// One step of waiting for more events before blocking: first offer the CPU to any other
/// thread that can run (the publisher, or another subscriber with events queued), then back off.
///
/// A subscriber that polls its empty queue without yielding keeps its CPU for microseconds per
/// idle moment; with more busy threads than CPUs (a publisher and four subscribers on two, in
/// the fan-out benchmark) that time is taken from the threads doing the work: yielding first
/// raised the fan-out's throughput 1.5-fold on two CPUs. Waits for a call or a reply spin
/// without yielding instead: there the next message is usually a few microseconds away, and a
/// yield (a system call) would delay noticing it.
fn yield_then_back_off(backoff: &crossbeam_utils::Backoff) {
    std::thread::yield_now();
    backoff.snooze();
}

/// The next piece of work, in priority order: orders, calls, events. Polls briefly before
/// blocking, so a busy plugin's thread does not park and wake for every message (a wake-up
/// costs far more than the work on small machines), while an idle one blocks and uses no CPU.
/// After a run of events (`streaming`) it yields while it polls ([`yield_then_back_off`]).
fn next_work(
    slot: &Slot,
    control: &Receiver<Control>,
    jobs: &Receiver<Job>,
    events: &Receiver<Delivery>,
    streaming: bool,
) -> Work {
    let try_all = || -> Option<Work> {
        if let Ok(order) = control.try_recv() {
            return Some(Work::Order(order));
        }
        if let Ok(job) = jobs.try_recv() {
            return Some(Work::Call(job));
        }
        events.try_recv().ok().map(Work::Event)
    };
    let backoff = crossbeam_utils::Backoff::new();
    loop {
        if let Some(work) = try_all() {
            return work;
        }
        if slot.is_closed() {
            // Stopping: only an order (Stop) can come now; wait for it instead of spinning.
            return match control.recv() {
                Ok(order) => Work::Order(order),
                Err(_) => Work::Exit,
            };
        }
        if backoff.is_completed() {
            break;
        }
        if streaming {
            yield_then_back_off(&backoff);
        } else {
            backoff.snooze();
        }
    }
    select! {
        recv(control) -> order => order.map_or(Work::Exit, Work::Order),
        recv(jobs) -> job => match job {
            Ok(job) => Work::Call(job),
            Err(_) => control.recv().map_or(Work::Exit, Work::Order),
        },
        recv(events) -> delivery => match delivery {
            Ok(delivery) => Work::Event(delivery),
            Err(_) => control.recv().map_or(Work::Exit, Work::Order),
        },
    }
}

/// The body of a plugin's dispatcher thread, once its instance is active.
pub(crate) fn run(slot: Arc<Slot>, mut instance: PluginInstanceBox, recorder: Arc<Recorder>) {
    let name = slot.name.clone();
    let jobs = slot.jobs_rx.clone();
    let events = slot.events_rx.clone();
    let control = slot.control_rx.clone();
    let generation = slot.generation.load(Ordering::Acquire);
    serve_as(&name);
    let plugin_label = Label::new(&name);
    // Whether the last work was a run of events (see `next_work`).
    let mut streaming = false;
    loop {
        if slot.generation.load(Ordering::Acquire) != generation {
            // A restart left this thread behind (it was stuck in plugin code): retire it.
            if let Err(e) = instance.deactivate().into_result() {
                log::warn!("plugin {name}: deactivate of the replaced instance failed: {e}");
            }
            return;
        }
        match next_work(&slot, &control, &jobs, &events, streaming) {
            Work::Exit => return,
            Work::Order(order) => {
                if obey(&slot, &mut instance, order) {
                    return;
                }
            }
            Work::Call(job) => {
                streaming = false;
                if slot.is_closed() {
                    // Deactivation has begun: dropping the job answers its caller "cancelled".
                    drop(job);
                    continue;
                }
                // Events and calls wait in separate queues. Handle first the events that were
                // published before this call was made (ids come from one counter), so a plugin
                // never answers a call without having seen what happened before it.
                let mut at = None;
                let mut records = Records::new(&recorder, &plugin_label);
                while let Ok(delivery) = events.try_recv() {
                    let later = delivery.event.id > job.work_id;
                    let started = at.unwrap_or_else(Instant::now);
                    let (panicked, finished) =
                        deliver_event(&slot, &mut instance, &mut records, delivery, started);
                    at = Some(finished);
                    if panicked {
                        records.flush();
                        if await_orders(&slot, &mut instance, &control) {
                            return;
                        }
                    }
                    if later {
                        break;
                    }
                }
                records.flush();
                let started = Instant::now();
                let Job {
                    chain,
                    work_id,
                    run,
                } = job;
                let env = JobEnv {
                    started,
                    slot: &slot,
                    recorder: &recorder,
                    plugin: &plugin_label,
                };
                let (failed, finished) = with_current(chain, work_id, || match run {
                    JobRun::Command(command) => command.run(&mut instance, &env),
                    JobRun::Boxed(run) => run(&mut instance, &env),
                });
                let elapsed = finished.map_or_else(|| started.elapsed(), |at| at - started);
                slot.metrics.record_call(elapsed, failed);
                if failed == Some(ErrorKind::Panicked) {
                    slot.mark_faulted(format!("a handler of plugin {name} panicked"), false);
                    if await_orders(&slot, &mut instance, &control) {
                        return;
                    }
                }
            }
            Work::Event(delivery) => {
                streaming = true;
                if slot.is_closed() {
                    continue;
                }
                // Handle queued events back to back while no order or call is waiting: one
                // clock reading serves as the end of one delivery and the start of the next.
                // Their records are written in one go when the run ends.
                let mut next = Some(delivery);
                let mut started = Instant::now();
                let mut records = Records::new(&recorder, &plugin_label);
                while let Some(delivery) = next.take() {
                    let (panicked, finished) =
                        deliver_event(&slot, &mut instance, &mut records, delivery, started);
                    if panicked {
                        records.flush();
                        if await_orders(&slot, &mut instance, &control) {
                            return;
                        }
                        break;
                    }
                    if !control.is_empty()
                        || !jobs.is_empty()
                        || slot.is_closed()
                        || slot.generation.load(Ordering::Relaxed) != generation
                    {
                        break;
                    }
                    next = events.try_recv().ok();
                    started = finished;
                }
                records.flush();
            }
        }
    }
}

/// After a panic: take no more work until the supervisor says what to do (restart with a fresh
/// instance, or stop), so nothing reaches the faulted instance. Returns whether to exit.
fn await_orders(
    slot: &Slot,
    instance: &mut PluginInstanceBox,
    control: &Receiver<Control>,
) -> bool {
    match control.recv_timeout(Duration::from_secs(10)) {
        Ok(order) => obey(slot, instance, order),
        // No supervisor answer (the host is going away): go on with what we have.
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => true,
    }
}

/// Carries out an order; returns whether the thread must exit.
fn obey(slot: &Slot, instance: &mut PluginInstanceBox, order: Control) -> bool {
    let name = &slot.name;
    match order {
        Control::Stop { done } => {
            let cancelled = slot.cancel_queued();
            if cancelled > 0 {
                log::info!(
                    "plugin {name}: {cancelled} queued calls and events cancelled at deactivation"
                );
            }
            let result = instance.deactivate().into_result();
            let _ = done.send(result);
            true
        }
        Control::Swap {
            next,
            from_version,
            done,
        } => {
            let mut next = *next;
            let result = swap(name, instance, &mut next, &from_version);
            if result.is_ok() {
                std::mem::swap(instance, &mut next);
            }
            // `next` now holds whichever instance is retired; its library stays mapped.
            drop(next);
            let _ = done.send(result);
            false
        }
        Control::Restart { next, done } => {
            // The faulted instance's state may be what faulted: no handoff.
            if let Err(e) = instance.deactivate().into_result() {
                log::warn!("plugin {name}: deactivate of the faulted instance failed: {e}");
            }
            *instance = *next;
            let _ = done.send(instance.activate().into_result());
            false
        }
    }
}

/// Delivery records of one run of events on a dispatcher thread, written to the recorder in one
/// go (one lock) when the run ends, before the thread answers a collecting publisher, and at
/// most [`Records::BATCH`] at a time.
struct Records<'a> {
    recorder: &'a Recorder,
    /// The plugin's name, as its records keep it.
    plugin: &'a Label,
    pending: Vec<Entry>,
    /// When the last delivery finished, in both forms: the next one starts then.
    last: Option<(Instant, u64)>,
}

impl<'a> Records<'a> {
    const BATCH: usize = 64;

    fn new(recorder: &'a Recorder, plugin: &'a Label) -> Self {
        Records {
            recorder,
            plugin,
            pending: Vec::new(),
            last: None,
        }
    }

    fn push(&mut self, entry: Entry) {
        self.pending.push(entry);
        if self.pending.len() >= Self::BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.recorder.push_all(&mut self.pending);
        }
    }
}

impl Drop for Records<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Runs one event handler, which starts at `started` (a clock reading the caller took); returns
/// whether it panicked, and when it finished.
fn deliver_event(
    slot: &Slot,
    instance: &mut PluginInstanceBox,
    records: &mut Records<'_>,
    delivery: Delivery,
    started: Instant,
) -> (bool, Instant) {
    let name = &slot.name;
    let recorder = records.recorder;
    let event = delivery.event;
    // The delivery's own id only matters to the recorder (as the parent of what the handler
    // does); without recording, the event's id serves and no shared counter is touched.
    let recording = recorder.enabled();
    let work = if recording {
        recorder.local_id()
    } else {
        event.id
    };
    let result = with_current(delivery.chain, work, || {
        instance.on_event(&event).into_result()
    });
    let result = result.map(|r| r.into_option().unwrap_or_default());
    let finished = Instant::now();
    let took = finished.saturating_duration_since(started);
    slot.metrics
        .record_event(took, result.as_ref().err().map(|e| e.kind));
    if recording {
        let started_us = match records.last {
            Some((at, us)) if at == started => us,
            _ => recorder.micros(started),
        };
        let took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        records.last = Some((finished, started_us.saturating_add(took_us)));
        records.push(Entry {
            id: work,
            parent: event.id,
            kind: RecordKind::Delivery,
            name: Label::new(&event.event_type),
            // Filled in from the publication's record when a snapshot is taken.
            caller: Label::new(""),
            plugin: records.plugin.clone(),
            waited_us: 0,
            started_us,
            finished_us: started_us.saturating_add(took_us),
            outcome: Outcome::of(&result),
        });
    }
    let mut panicked = false;
    if let Err(e) = &result {
        log::warn!(
            "plugin {name}: handler for event {} #{} failed: {e}",
            event.event_type,
            event.id
        );
        if e.kind == ErrorKind::Panicked {
            slot.mark_faulted(format!("event handler panicked: {e}"), false);
            panicked = true;
        }
    }
    if let Some(reply) = delivery.reply {
        // The publisher may read the trace as soon as it has every answer.
        records.flush();
        let _ = reply.send((name.clone(), result));
    }
    (panicked, finished)
}

/// Hands state from the old instance to the new one and activates it. On error the old
/// instance stays (and, having only saved state, stays active).
fn swap(
    name: &str,
    old: &mut PluginInstanceBox,
    next: &mut PluginInstanceBox,
    from_version: &str,
) -> Result<(), PluginError> {
    let state = match old.save_state().into_result() {
        Ok(state) => state.into_option(),
        Err(e) => {
            log::warn!("plugin {name}: save_state failed, the new instance starts fresh: {e}");
            None
        }
    };
    if let Some(state) = state {
        if let Err(e) = next.restore_state(state, from_version.into()).into_result() {
            log::warn!("plugin {name}: restore_state failed, the new instance starts fresh: {e}");
        }
    }
    next.activate().into_result()?;
    if let Err(e) = old.deactivate().into_result() {
        log::warn!("plugin {name}: the old instance's deactivate failed: {e}");
    }
    Ok(())
}

/// How long to wait for a stopping plugin thread.
pub(crate) fn wait_done(
    done: &Receiver<Result<(), PluginError>>,
    grace: Duration,
) -> Result<(), PluginError> {
    match done.recv_timeout(grace) {
        Ok(r) => r,
        Err(_) => Err(PluginError::new(
            ErrorKind::Timeout,
            format!(
                "did not finish within {} ms; its thread is left running (threads cannot be killed)",
                grace.as_millis()
            ),
        )),
    }
}
