//! Timers: `Context::every` and `Context::after` (plugin-api 1.1).
//!
//! One thread per host serves every timer of every plugin, started on the first timer: a
//! heap of due times and a crossbeam `recv_deadline` on its order channel, so it sleeps until
//! the next timer is due or an order comes, and costs nothing while no timer runs. (A crossbeam
//! `tick` per timer would need a `select` over a changing set of channels; one heap does not.)
//!
//! When a timer is due, the thread queues its event on the plugin's own event queue, exactly
//! where a published event goes, so the handler runs on the plugin's thread in order with
//! everything else and the trace shows the event and its delivery. A timer ends when it is
//! stopped, when it has fired once (`after`), or when the instance whose context started it has
//! ended (the seal) or its plugin stopped taking work: nothing of a deactivated plugin fires.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Weak,
    },
    time::{Duration, Instant},
};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use plugin_api::{ErrorKind, Event, Payload, PluginError};
use serde::Serialize;

use super::{
    chain::Chain,
    clock::Clock,
    slot::{Delivery, Seal, Slot},
};
use crate::observe::recorder::{Entry, Label, Outcome, RecordKind, Recorder};

/// A timer as the thread keeps it.
struct Armed {
    name: Arc<str>,
    /// `Some` for a repeating timer.
    every: Option<Duration>,
    slot: Weak<Slot>,
    seal: Seal,
}

enum Order {
    Start { id: u64, due: Instant, armed: Armed },
    Stop(u64),
}

/// A timer a plugin started (`Context::every` or `Context::after`) and that has not ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimerInfo {
    /// The event it queues on the plugin's own thread.
    pub event: String,
    /// Whether it fires every `interval_ms` (`every`) or once after it (`after`).
    pub repeats: bool,
    /// Its period, or its delay, in milliseconds.
    pub interval_ms: u64,
}

/// The timers that have not ended, by id: the plugin each serves, the seal of the instance
/// that started it, and what it is. The thread removes a timer when it ends.
type Listing = Mutex<Listed>;

/// What a [`Listing`] holds.
type Listed = HashMap<u64, (Arc<str>, Seal, TimerInfo)>;

/// The timers in `listing` that `plugin`'s current instance started: those of a deactivated
/// instance are left out, even before the thread drops them.
fn current<'a>(listing: &'a Listed, plugin: &'a str) -> impl Iterator<Item = &'a TimerInfo> {
    listing
        .values()
        .filter(move |(name, seal, _)| &**name == plugin && !seal.is_retired())
        .map(|(_, _, info)| info)
}

/// The host's timers (one per dispatcher).
pub(crate) struct Timers {
    orders: Mutex<Option<Sender<Order>>>,
    next: AtomicU64,
    /// The timers that have not ended, and what each is (for [`Timers::of`] and
    /// [`Timers::running`]).
    listing: Arc<Listing>,
    /// `max_timers_per_plugin`.
    limit: usize,
    recorder: Arc<Recorder>,
    clock: Arc<Clock>,
}

/// What a timer needs to know of the plugin it serves.
pub(crate) struct TimerTarget {
    pub slot: Weak<Slot>,
    pub seal: Seal,
}

fn check_name(name: &str) -> Result<(), PluginError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PluginError::invalid(format!(
            "timer event name {name:?} is not a valid event type (not empty, no spaces or control characters)"
        )));
    }
    Ok(())
}

impl Timers {
    pub fn new(recorder: Arc<Recorder>, clock: Arc<Clock>, limit: usize) -> Timers {
        Timers {
            orders: Mutex::new(None),
            next: AtomicU64::new(1),
            listing: Arc::default(),
            limit,
            recorder,
            clock,
        }
    }

    /// Starts a timer for `target` that queues event `name` after `delay`, and then every
    /// `delay` if `repeat`. Returns its id.
    pub fn start(
        &self,
        target: TimerTarget,
        name: &str,
        delay: Duration,
        repeat: bool,
    ) -> Result<u64, PluginError> {
        check_name(name)?;
        let delay = delay.max(Duration::from_millis(1));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = target.slot.upgrade() {
            let mut listing = self.listing.lock();
            let running = current(&listing, &slot.name).count();
            if running >= self.limit {
                return Err(PluginError::new(
                    ErrorKind::QuotaExceeded,
                    format!(
                        "plugin {} runs {running} timers, its limit (max_timers_per_plugin); cannot start timer {name}: stop one first (drop its handle)",
                        slot.name
                    ),
                ));
            }
            let info = TimerInfo {
                event: name.to_owned(),
                repeats: repeat,
                interval_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            };
            listing.insert(id, (slot.name.clone(), target.seal.clone(), info));
        }
        let order = Order::Start {
            id,
            due: Instant::now() + delay,
            armed: Armed {
                name: Arc::from(name),
                every: repeat.then_some(delay),
                slot: target.slot,
                seal: target.seal,
            },
        };
        let mut orders = self.orders.lock();
        if orders.is_none() {
            let (tx, rx) = unbounded();
            let (recorder, clock) = (self.recorder.clone(), self.clock.clone());
            let listing = self.listing.clone();
            let spawned = std::thread::Builder::new()
                .name("plugin-timers".to_owned())
                .spawn(move || run(&rx, &listing, (&recorder, &clock)));
            if let Err(e) = spawned {
                self.listing.lock().remove(&id);
                return Err(PluginError::failed(format!(
                    "cannot start the timer thread: {e}"
                )));
            }
            *orders = Some(tx);
        }
        let sent = orders.as_ref().is_some_and(|tx| tx.send(order).is_ok());
        if !sent {
            self.listing.lock().remove(&id);
            return Err(PluginError::failed("the timer thread is gone"));
        }
        Ok(id)
    }

    /// The timers `plugin`'s current instance started that have not ended, by event name.
    /// A deactivated instance's timers are not listed, even before the thread drops them.
    pub fn of(&self, plugin: &str) -> Vec<TimerInfo> {
        let mut timers: Vec<TimerInfo> = current(&self.listing.lock(), plugin).cloned().collect();
        timers.sort_by(|a, b| (&a.event, a.interval_ms).cmp(&(&b.event, b.interval_ms)));
        timers
    }

    /// How many timers run now. A timer whose plugin was deactivated counts until it was due
    /// once more (the thread drops it then, without firing it).
    pub fn running(&self) -> usize {
        self.listing.lock().len()
    }

    /// Stops timer `id` (unknown ids are ignored).
    pub fn stop(&self, id: u64) {
        self.listing.lock().remove(&id);
        if let Some(tx) = self.orders.lock().as_ref() {
            let _ = tx.send(Order::Stop(id));
        }
    }
}

/// The timer thread: ends when the [`Timers`] it serves is dropped.
fn run(orders: &Receiver<Order>, listing: &Listing, (recorder, clock): (&Recorder, &Clock)) {
    let mut armed: HashMap<u64, Armed> = HashMap::new();
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    loop {
        let order = match due.peek() {
            Some(Reverse((at, _))) => orders.recv_deadline(*at),
            None => orders.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match order {
            Ok(Order::Start {
                id,
                due: at,
                armed: a,
            }) => {
                armed.insert(id, a);
                due.push(Reverse((at, id)));
            }
            Ok(Order::Stop(id)) => {
                armed.remove(&id);
                listing.lock().remove(&id);
            }
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        while let Some(Reverse((at, id))) = due.peek().copied() {
            if at > now {
                break;
            }
            due.pop();
            let Some(timer) = armed.get(&id) else {
                continue;
            };
            if fire(timer, recorder, clock) {
                if let Some(every) = timer.every {
                    // A host that fell behind skips the ticks it missed instead of bunching them.
                    let next = (at + every).max(now);
                    due.push(Reverse((next, id)));
                    continue;
                }
            }
            armed.remove(&id);
            listing.lock().remove(&id);
        }
    }
}

/// Queues one timer event; returns whether the timer's plugin still takes them.
fn fire(timer: &Armed, recorder: &Recorder, clock: &Clock) -> bool {
    if timer.seal.is_retired() {
        return false;
    }
    let Some(slot) = timer.slot.upgrade() else {
        return false;
    };
    if slot.is_closed() {
        return false;
    }
    // The recorder counts from the clock's epoch: one conversion serves both.
    let now = clock.micros(Instant::now());
    let event = Arc::new(Event {
        id: clock.next_id(),
        parent: 0,
        event_type: timer.name.as_ref().into(),
        source: "host".into(),
        timestamp_ms: clock.wall_ms(now),
        data: Payload::empty(),
    });
    if recorder.enabled() {
        let at = now;
        recorder.push(Entry {
            id: event.id,
            parent: 0,
            kind: RecordKind::Event,
            name: Label::new(&timer.name),
            caller: Label::new("host"),
            plugin: Label::new(""),
            waited_us: 0,
            started_us: at,
            finished_us: at,
            outcome: Outcome::Published(1),
        });
    }
    let delivery = Delivery {
        event,
        chain: Chain::empty(),
        reply: None,
    };
    slot.deliver(delivery).is_ok()
}
