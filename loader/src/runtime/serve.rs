//! A plugin's thread: it owns the instance and runs what arrives in the slot's queues, each
//! piece through [`Invoker::invoke`].
//!
//! Work is taken in priority order: orders, calls, events. The thread polls briefly before it
//! blocks, so a busy plugin's thread does not park and wake for every message (a wake-up costs
//! far more than the work on small machines), while an idle one blocks and uses no CPU.

use std::{
    sync::{atomic::Ordering, Arc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{select_biased, Sender};
use plugin_api::{ErrorKind, PluginError};

use super::{
    call::{Answer, Call, Invoker, Record},
    chain::serve_as,
    instance::{await_orders, instantiate, lifecycle_call, obey, Live},
    slot::{Control, Delivery, Fresh, Job, Slot},
    stamp::{serve_with, Stamp},
};
use crate::observe::recorder::{Label, Recorder};

/// busy subscriber's pipe sees few writes, small enough that an order or call waiting behind the
/// run is not held up long (the run is checked for them only between runs).
const AHEAD_RUN: usize = 64;

/// Starts `slot`'s thread: it makes the instance from `fresh`, activates it, says how that went
/// on `ready`, and then serves the slot's queues until it is stopped. `grace` bounds the wait
/// for an old instance's `deactivate` during a swap or restart.
pub(crate) fn spawn(
    slot: Arc<Slot>,
    recorder: Arc<Recorder>,
    fresh: Fresh,
    ready: Sender<Result<(), PluginError>>,
    grace: Duration,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("plugin-{}", slot.name))
        .spawn(move || {
            serve_as(&slot.name);
            serve_with(slot.stopping.clone());
            let plugin = Label::new(&slot.name);
            let mut live = match instantiate(&slot, fresh) {
                Ok(live) => live,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let activated = {
                let mut invoker = Invoker::new(&slot, &recorder, &plugin);
                lifecycle_call(&mut invoker, &mut live, Call::Activate)
            };
            let ok = activated.is_ok();
            let delivered = ready.send(activated.map(|_| ())).is_ok();
            if ok && delivered {
                // Serve even if the slot was closed meanwhile (a deactivation that came the
                // moment the load returned): whoever closes a slot queues a stop order, and
                // `serve` waits for it, so the deactivation is answered instead of waited on
                // until its grace ran out.
                serve(&slot, live, &recorder, &plugin, grace);
            } else {
                // Activation failed, or the host gave up on it (deadline) and no longer waits
                // on its answer: undo it.
                let mut invoker = Invoker::new(&slot, &recorder, &plugin);
                if ok {
                    let _ = lifecycle_call(&mut invoker, &mut live, Call::Deactivate);
                }
                let _ = lifecycle_call(&mut invoker, &mut live, Call::Drop);
                live.seal.retire();
            }
        })
}

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
/// idle moment; with more busy threads than CPUs that time is taken from the threads doing the
/// work (BENCHMARKS.md has the measurement). Waits for a call or a reply spin without yielding
/// instead: there the next message is usually a few microseconds away, and a yield (a system
/// call) would delay noticing it.
fn yield_then_back_off(backoff: &crossbeam_utils::Backoff) {
    std::thread::yield_now();
    backoff.snooze();
}

/// How long a plugin's thread that is [`Heat::Hot`] keeps looking for its next piece of work,
/// offering the CPU to other threads between looks, before it sleeps.
///
/// A caller that makes calls back to back sends the next one a few microseconds after the
/// answer, and a publisher's next event often follows as closely. A thread asleep by then is
/// woken on a CPU that went idle, which on the virtual machines measured costs 40–60 µs instead
/// of 5 (BENCHMARKS.md); the round trip then went bimodal from run to run.
const HOT_WINDOW: Duration = Duration::from_micros(50);

/// Whether a plugin's thread looks for more work for [`HOT_WINDOW`] before it sleeps: only
/// while its work comes that close together. Work that comes further apart costs one window
/// (the one that ran out), then none until the work comes close together again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heat {
    /// The last piece of work came within the window: look for the next one before sleeping.
    Hot,
    /// Sleep as soon as the backoff is done.
    Cold,
}

impl Heat {
    /// The heat after a wait that found work `waited` after the backoff ended (`None`: found
    /// before that).
    fn after(self, waited: Option<Duration>) -> Heat {
        match waited {
            None => self,
            Some(waited) if waited <= HOT_WINDOW => Heat::Hot,
            Some(_) => Heat::Cold,
        }
    }
}

/// The next piece of work, in priority order: orders, calls, events; and how long after the
/// backoff it came (`None`: before). After a run of events (`streaming`) it yields while it
/// polls ([`yield_then_back_off`]); a [`Heat::Hot`] thread then keeps looking for
/// [`HOT_WINDOW`] before it sleeps.
fn next_work(slot: &Slot, streaming: bool, heat: Heat) -> (Work, Option<Duration>) {
    let (control, jobs, events) = (&slot.control_rx, &slot.jobs_rx, &slot.events_rx);
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
            return (work, None);
        }
        if slot.is_closed() {
            // Stopping: only an order (Stop) can come now; wait for it instead of spinning.
            let work = match control.recv() {
                Ok(order) => Work::Order(order),
                Err(_) => Work::Exit,
            };
            return (work, None);
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
    let looking = Instant::now();
    if heat == Heat::Hot {
        let until = looking + HOT_WINDOW;
        while Instant::now() < until && !slot.is_closed() {
            std::thread::yield_now();
            if let Some(work) = try_all() {
                return (work, Some(looking.elapsed()));
            }
        }
    }
    let work = select_biased! {
        recv(control) -> order => order.map_or(Work::Exit, Work::Order),
        recv(jobs) -> job => match job {
            Ok(job) => Work::Call(job),
            Err(_) => control.recv().map_or(Work::Exit, Work::Order),
        },
        recv(events) -> delivery => match delivery {
            Ok(delivery) => Work::Event(delivery),
            Err(_) => control.recv().map_or(Work::Exit, Work::Order),
        },
    };
    (work, Some(looking.elapsed()))
}

/// The body of a plugin's thread once its instance is active.
fn serve(
    slot: &Arc<Slot>,
    mut live: Live,
    recorder: &Arc<Recorder>,
    plugin: &Label,
    grace: Duration,
) {
    let generation = slot.generation.load(Ordering::Acquire);
    // Whether the last work was a run of events, and whether work comes close together (see
    // `next_work`).
    let mut streaming = false;
    let mut heat = Heat::Cold;
    loop {
        if slot.generation.load(Ordering::Acquire) != generation {
            // A restart left this thread behind (it was stuck in plugin code): retire it.
            let mut invoker = Invoker::new(slot, recorder, plugin);
            if let Err(e) = lifecycle_call(&mut invoker, &mut live, Call::Deactivate) {
                log::warn!(
                    "plugin {}: the replaced instance's deactivate failed: {e}",
                    slot.name
                );
            }
            let _ = lifecycle_call(&mut invoker, &mut live, Call::Drop);
            live.seal.retire();
            return;
        }
        let (work, waited) = next_work(slot, streaming, heat);
        heat = heat.after(waited);
        slot.busy.store(true, Ordering::Release);
        let exit = match work {
            Work::Exit => true,
            Work::Order(order) => obey(slot, &mut live, order, recorder, plugin, grace),
            Work::Call(job) => {
                streaming = false;
                run_call(slot, &mut live, job, recorder, plugin, grace)
            }
            Work::Event(delivery) => {
                streaming = true;
                run_events(
                    slot, &mut live, delivery, recorder, plugin, grace, generation,
                )
            }
        };
        slot.busy.store(false, Ordering::Release);
        if exit {
            return;
        }
    }
}

/// Runs one call (after the events published before it); returns whether to exit.
fn run_call(
    slot: &Arc<Slot>,
    live: &mut Live,
    job: Job,
    recorder: &Arc<Recorder>,
    plugin: &Label,
    grace: Duration,
) -> bool {
    if slot.is_closed() {
        // Deactivation has begun: dropping the job answers its caller "cancelled".
        return false;
    }
    let mut invoker = Invoker::new(slot, recorder, plugin);
    // Events and calls wait in separate queues. Handle first the events that were published
    // before this call was made (ids come from one counter), so a plugin never answers a call
    // without having seen what happened before it.
    while let Ok(delivery) = slot.events_rx.try_recv() {
        let later = delivery.event.id > job.work;
        let started = invoker.finished_or_now();
        let panicked = deliver(&mut invoker, live, delivery, started);
        if panicked {
            invoker.flush();
            drop(invoker);
            if await_orders(slot, live, recorder, plugin, grace) {
                return true;
            }
            invoker = Invoker::new(slot, recorder, plugin);
        }
        if later {
            break;
        }
    }
    invoker.flush();
    let Job {
        chain,
        work,
        call,
        kind,
        name,
        record,
        reply,
        caller,
        cancel,
    } = job;
    let record = record.map(|(parent, caller, queued_us)| Record {
        kind,
        name: name.clone(),
        parent,
        caller,
        queued_us,
    });
    let stamp = Stamp {
        caller: caller.as_str(),
        id: work,
        token: Some(cancel.clone()),
    };
    let result = invoker.invoke(
        &mut live.instance,
        call,
        (chain, work, Instant::now()),
        record,
        Some(stamp),
    );
    let panicked = matches!(&result, Err(e) if e.kind == ErrorKind::Panicked);
    match reply {
        Some(reply) => {
            if reply.send(result) {
            } else if cancel.is_cancelled() || slot.stopping.is_cancelled() {
                // The caller was told "timed out" or "cancelled", and the handler was told to
                // stop: its answer coming late is what cancellation looks like, not a fault.
                slot.metrics
                    .cancelled_replies
                    .fetch_add(1, Ordering::Relaxed);
                log::debug!(
                    "plugin {} returned from cancelled {} {}",
                    slot.name,
                    super::kind_word(kind),
                    name.as_str()
                );
            } else {
                slot.metrics.late_replies.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "late reply from plugin {} for {} {} dropped: the caller stopped waiting",
                    slot.name,
                    super::kind_word(kind),
                    name.as_str()
                );
            }
        }
        None => {
            if let Err(e) = result {
                log::warn!(
                    "plugin {}: {} {} failed: {e}",
                    slot.name,
                    super::kind_word(kind),
                    name.as_str()
                );
            }
        }
    }
    drop(invoker);
    panicked && await_orders(slot, live, recorder, plugin, grace)
}

/// Handles queued events back to back while no order or call is waiting: one clock reading
/// serves as the end of one delivery and the start of the next, and their records are written
/// in one go when the run ends. Returns whether to exit.
///
/// An instance in a child process is first handed up to [`AHEAD_RUN`] of the queued events in
/// one go ([`SendAhead`](super::slot::SendAhead)), and more while it works through them; they are then delivered one
/// by one as for any instance. Should one of them panic, the rest of the run goes to the
/// instance the supervisor puts in its place (handed to it again), as queued events would.
fn run_events(
    slot: &Arc<Slot>,
    live: &mut Live,
    first: Delivery,
    recorder: &Arc<Recorder>,
    plugin: &Label,
    grace: Duration,
    generation: u64,
) -> bool {
    if slot.is_closed() {
        return false;
    }
    let mut invoker = Invoker::new(slot, recorder, plugin);
    let mut run = std::collections::VecDeque::new();
    let mut next = Some(first);
    // Whether `next` was handed over already, as part of the run before it.
    let mut handed = false;
    let mut started = Instant::now();
    while let Some(delivery) = next.take() {
        if let Some(ahead) = &live.ahead {
            if !handed {
                take_run(slot, &mut run, AHEAD_RUN - 1);
                let events: Vec<_> = std::iter::once(&delivery)
                    .chain(run.iter())
                    .map(|d| d.event.clone())
                    .collect();
                ahead.send_ahead(&events);
            } else if run.is_empty()
                || (run.len() < AHEAD_RUN / 2 && slot.events_rx.len() >= AHEAD_RUN / 2)
            {
                // The child is working through what it was handed: top its queue up now, so
                // that it finds the next events when it is done instead of waiting for this
                // thread to take in its answers first.
                let had = run.len();
                take_run(slot, &mut run, AHEAD_RUN);
                if run.len() > had {
                    let events: Vec<_> = run.iter().skip(had).map(|d| d.event.clone()).collect();
                    ahead.send_ahead(&events);
                }
            }
        }
        let panicked = deliver(&mut invoker, live, delivery, started);
        if panicked {
            drop(invoker);
            // A clone, not an address: the old instance's may be freed and reused meanwhile.
            let before = live.ahead.clone();
            if await_orders(slot, live, recorder, plugin, grace) {
                return true;
            }
            if run.is_empty() {
                return false;
            }
            // A fresh instance has not been handed the rest of the run; it is now, so that the
            // events it is handed later come after them there too.
            if let Some(ahead) = &live.ahead {
                if before.as_ref().is_none_or(|b| !Arc::ptr_eq(b, ahead)) {
                    let events: Vec<_> = run.iter().map(|d| d.event.clone()).collect();
                    ahead.send_ahead(&events);
                }
            }
            invoker = Invoker::new(slot, recorder, plugin);
        }
        if let Some(queued) = run.pop_front() {
            next = Some(queued);
            handed = true;
        } else {
            handed = false;
            if !slot.control_rx.is_empty()
                || !slot.jobs_rx.is_empty()
                || slot.is_closed()
                || slot.generation.load(Ordering::Relaxed) != generation
            {
                break;
            }
            next = slot.events_rx.try_recv().ok();
        }
        started = invoker.finished_or_now();
    }
    false
}

/// Moves queued events into `run` until it holds `limit`, stopping at an order or a call that
/// waits (they go before later events).
fn take_run(slot: &Slot, run: &mut std::collections::VecDeque<Delivery>, limit: usize) {
    while run.len() < limit && slot.control_rx.is_empty() && slot.jobs_rx.is_empty() {
        match slot.events_rx.try_recv() {
            Ok(delivery) => run.push_back(delivery),
            Err(_) => break,
        }
    }
}

/// Runs one event handler, which starts at `started`; returns whether it panicked.
fn deliver(
    invoker: &mut Invoker<'_>,
    live: &mut Live,
    delivery: Delivery,
    started: Instant,
) -> bool {
    let Delivery {
        event,
        chain,
        reply,
    } = delivery;
    // The delivery's own id only matters to the recorder (as the parent of what the handler
    // does); without recording, the event's id serves and no shared counter is touched.
    let work = if invoker.recorder.enabled() {
        invoker.slot.clock.local_id()
    } else {
        event.id
    };
    // Only the id is kept for the failure line: copying the type would cost an allocation per
    // delivery (the trace has the type).
    let id = event.id;
    let result = invoker.invoke(
        &mut live.instance,
        Call::Event(event),
        (chain, work, started),
        None,
        None,
    );
    let result = result.and_then(Answer::into_payload);
    let name = &invoker.slot.name;
    let mut panicked = false;
    if let Err(e) = &result {
        log::warn!("plugin {name}: handler for event #{id} failed: {e}");
        panicked = e.kind == ErrorKind::Panicked;
    }
    if let Some(reply) = reply {
        // The publisher may read the trace as soon as it has every answer.
        invoker.flush();
        let _ = reply.send((name.clone(), result));
    }
    panicked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_stays_hot_only_while_its_work_comes_close_together() {
        let close = Some(HOT_WINDOW / 2);
        let far = Some(HOT_WINDOW * 20);
        // Work found before the backoff ended changes nothing.
        assert_eq!(Heat::Cold.after(None), Heat::Cold);
        assert_eq!(Heat::Hot.after(None), Heat::Hot);
        // Work that came soon after the thread began to wait (asleep or looking) heats it...
        assert_eq!(Heat::Cold.after(close), Heat::Hot);
        assert_eq!(Heat::Hot.after(close), Heat::Hot);
        // ...and work that came long after cools it: sparse work costs no window.
        assert_eq!(Heat::Hot.after(far), Heat::Cold);
        assert_eq!(Heat::Cold.after(far), Heat::Cold);
    }
}
