//! Calls as data: everything the host asks of a plugin instance is a [`Call`], everything that
//! comes back is an [`Answer`], and [`invoke`] is the one function that runs a call on an
//! instance.
//!
//! `invoke` is the only place in the host that enters plugin code, so the guards live here and
//! nowhere else:
//! - the wait chain: the thread is marked busy with the call's callers, so a plugin that calls
//!   back into a call that needs its own thread is refused with a cycle error at once, from any
//!   entry point (`activate` during a reload included);
//! - the reply size limit, applied to every kind of answer before it leaves the plugin's thread;
//! - metrics and the flight-recorder entry;
//! - the panic fence: the plugin side catches panics and returns them as errors of kind
//!   `Panicked`; `invoke` reports them as faults of the plugin.
//!
//! An event is the call made most often, so its path is the shortest: events handled back to
//! back through one [`Invoker`] (a plugin's thread working through its queue) share one scope of
//! the thread's stamp, set in place for each event instead of saved and restored around it, and
//! their records are written in one go.
//!
//! Deadlines are armed by whoever waits for the answer: every call is made through a bounded
//! wait ([`Waiter::wait`](super::reply::Waiter::wait) for calls, the lifecycle's bounded waits
//! for activation, state handoff and deactivation), so no entry into plugin code is waited on
//! without a deadline. A thread stuck past its deadline is detached, never waited on again.
//!
//! Both enums derive serde, so the same values can travel to a plugin in another process.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use abi_stable::std_types::RVec;
use plugin_api::{
    CommandRequest, ErrorKind, Event, HookOutcome, Message, MiddlewareAction, Payload, PluginError,
    PluginInstanceBox,
};
use serde::{Deserialize, Serialize};

use super::{
    chain::{with_current, Chain},
    slot::Slot,
    stamp::{self, Stamp},
};
use crate::observe::recorder::{Delivered, Entry, Label, Outcome, RecordKind, Recorder};

/// Everything the host asks of a plugin instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Call {
    /// Start serving.
    Activate,
    /// Stop serving; the plugin value is dropped at the end of it.
    Deactivate,
    /// Run command `command` (the name the plugin declared).
    Command {
        /// The command's short name.
        command: Label,
        /// Its arguments.
        args: Payload,
    },
    /// Handle one event.
    Event(Arc<Event>),
    /// Handle a direct message, or an RPC call when its method is not empty.
    Message(Box<Message>),
    /// Run one handler of hook `hook`.
    Hook {
        /// The hook's name.
        hook: Arc<str>,
        /// The data so far.
        data: Payload,
    },
    /// Middleware before a command.
    Before(Box<CommandRequest>),
    /// Middleware after a command, with the command's result so far.
    After(Box<(CommandRequest, Result<Payload, PluginError>)>),
    /// A provider method.
    Provide {
        /// The provider's name.
        provider: Arc<str>,
        /// The method.
        method: Arc<str>,
        /// Its arguments.
        args: Payload,
    },
    /// Hand over state before a reload.
    SaveState,
    /// Take over the state of the version that ran before.
    RestoreState {
        /// What the old instance saved.
        state: RVec<u8>,
        /// The version it came from.
        from_version: String,
    },
    /// Drop the instance.
    Drop,
}

/// What comes back from a [`Call`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Answer {
    /// Activate, deactivate, restore_state and drop: it is done.
    Done,
    /// A command's, provider's or RPC reply, or a handled event's or message's answer.
    Payload(Payload),
    /// What a middleware decided before a command (boxed: a request inline would make every
    /// answer, and every move of one on the event path, 120 bytes instead of 48).
    Middleware(Box<MiddlewareAction>),
    /// What a middleware made of a command's result.
    Passed(Result<Payload, PluginError>),
    /// A hook handler's outcome.
    Hook(HookOutcome),
    /// The state an instance saved (`None`: it keeps none).
    State(Option<RVec<u8>>),
}

impl Call {
    /// The name of the entry point, for errors.
    pub fn entry(&self) -> &'static str {
        match self {
            Call::Activate => "activate",
            Call::Deactivate => "deactivate",
            Call::Command { .. } => "handle_command",
            Call::Event(_) => "on_event",
            Call::Message(m) if m.method.is_empty() => "on_message",
            Call::Message(_) => "on_call",
            Call::Hook { .. } => "on_hook",
            Call::Before(_) => "before_command",
            Call::After(_) => "after_command",
            Call::Provide { .. } => "provide",
            Call::SaveState => "save_state",
            Call::RestoreState { .. } => "restore_state",
            Call::Drop => "drop",
        }
    }

    /// Whether the call is a handler call counted in the plugin's call metrics.
    fn is_handler(&self) -> bool {
        !matches!(
            self,
            Call::Activate
                | Call::Deactivate
                | Call::Event(_)
                | Call::SaveState
                | Call::RestoreState { .. }
                | Call::Drop
        )
    }
}

impl Answer {
    /// The payload of a payload answer.
    pub fn into_payload(self) -> Result<Payload, PluginError> {
        match self {
            Answer::Payload(p) => Ok(p),
            other => Err(mismatch("a payload", &other)),
        }
    }

    /// The bytes this answer carries to the caller, for the reply size limit.
    fn size(&self) -> usize {
        match self {
            Answer::Done | Answer::State(None) => 0,
            Answer::Payload(p) | Answer::Passed(Ok(p)) | Answer::Hook(HookOutcome::Continue(p)) => {
                p.len()
            }
            Answer::Middleware(action) => match &**action {
                MiddlewareAction::Continue(request) => request.args.len(),
                MiddlewareAction::Respond(r) => r.as_ref().into_result().map_or(0, |p| p.len()),
            },
            Answer::Passed(Err(_)) | Answer::Hook(HookOutcome::Veto(_)) => 0,
            Answer::State(Some(bytes)) => bytes.len(),
        }
    }
}

/// The error for an answer of another kind than the call asked for (a host bug).
pub(crate) fn mismatch(wanted: &str, got: &Answer) -> PluginError {
    PluginError::failed(format!(
        "internal error: expected {wanted} answer, got {got:?}"
    ))
}

/// The part of a call's flight-recorder entry that only its caller knew.
pub(crate) struct Record {
    pub kind: RecordKind,
    pub name: Label,
    pub parent: u64,
    pub caller: Label,
    /// When the call was queued, in the recorder's microseconds.
    pub queued_us: u64,
}

/// What `invoke` needs besides the call: the plugin's slot (metrics, faults, the reply size
/// limit), the recorder, and the records of a run of events written in one go.
pub(crate) struct Invoker<'a> {
    pub slot: &'a Slot,
    pub recorder: &'a Recorder,
    /// The plugin's name, as records keep it.
    pub plugin: &'a Label,
    pending: Vec<Delivered>,
    /// When the last event delivery finished, in both forms: the next one starts then.
    last: Option<(Instant, u64)>,
    /// When the last call finished: a run of events starts each delivery then, so one clock
    /// reading serves as the end of one and the start of the next.
    finished: Option<Instant>,
    /// The stamp scope of the run of events being delivered, if the last call was one.
    events: Option<stamp::EventStamps>,
}

/// Delivery records are written at most this many at a time.
const BATCH: usize = 64;

thread_local! {
    /// The buffer of delivery records, kept by the thread between its runs of events (made
    /// afresh for each run, its growth cost a few allocations per run). Empty between runs:
    /// every invoker writes its records out before it gives the buffer back.
    static PENDING: std::cell::Cell<Vec<Delivered>> = const { std::cell::Cell::new(Vec::new()) };
}

impl<'a> Invoker<'a> {
    pub fn new(slot: &'a Slot, recorder: &'a Recorder, plugin: &'a Label) -> Self {
        Invoker {
            slot,
            recorder,
            plugin,
            pending: PENDING.take(),
            last: None,
            finished: None,
            events: None,
        }
    }

    /// When the last call through this invoker finished, or now if none did.
    pub fn finished_or_now(&self) -> Instant {
        self.finished.unwrap_or_else(Instant::now)
    }

    /// Writes the pending delivery records (one lock).
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.recorder.push_deliveries(&mut self.pending);
        }
    }

    /// Runs `call` on `instance` for the callers `chain` as work `work`, started at `started`
    /// (a clock reading the caller of `invoke` took); [`Invoker::finished_or_now`] then tells
    /// when it finished. `stamp` is what the handler learns of its caller (an event's is made
    /// here: its source, and the event's own id, which an isolated plugin's worker can stamp
    /// alike for events written to it ahead); lifecycle calls have none.
    ///
    /// This is the one entry into plugin code: see the module docs for what it guards.
    pub fn invoke(
        &mut self,
        instance: &mut Option<PluginInstanceBox>,
        call: Call,
        (chain, work, started): (Chain, u64, Instant),
        record: Option<Record>,
        stamp: Option<Stamp<'_>>,
    ) -> Result<Answer, PluginError> {
        let call = match call {
            // An event's stamp is its source and its id, whatever `stamp` says.
            Call::Event(event) => {
                return self
                    .deliver_event(instance, &event, (chain, work, started))
                    .map(Answer::Payload)
            }
            call => {
                // Any other call ends a run of events: the stamp it had is put back first.
                self.events = None;
                call
            }
        };
        let entry = call.entry();
        let handler = call.is_handler();
        // Cloned only for calls that carry a token of their own.
        let token = stamp.as_ref().and_then(|s| s.token.clone());
        let stamped = stamp::enter(stamp);
        let result = with_current(chain, work, || run(instance, call));
        drop(stamped);
        let result = result.and_then(|answer| match self.slot.over_limit(entry, answer.size()) {
            Some(e) => Err(e),
            None => Ok(answer),
        });
        let finished = Instant::now();
        self.finished = Some(finished);
        let took = finished.saturating_duration_since(started);
        let cancelled =
            self.slot.stopping.is_cancelled() || token.is_some_and(|t| t.is_cancelled());
        let outcome = |result: &Result<Answer, PluginError>| {
            if cancelled {
                Outcome::Cancelled(u64::try_from(took.as_millis()).unwrap_or(u64::MAX))
            } else {
                Outcome::of(result)
            }
        };
        let failed = result.as_ref().err().map(|e| e.kind);
        if handler {
            self.slot.metrics.record_call(took, failed);
            if let Some(record) = record {
                let started_us = self.recorder.micros(started);
                let took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                self.recorder.push(Entry {
                    id: work,
                    parent: record.parent,
                    kind: record.kind,
                    name: record.name,
                    caller: record.caller,
                    plugin: self.plugin.clone(),
                    waited_us: u32::try_from(started_us.saturating_sub(record.queued_us))
                        .unwrap_or(u32::MAX),
                    started_us,
                    finished_us: started_us.saturating_add(took_us),
                    outcome: outcome(&result),
                });
            }
        }
        if failed == Some(ErrorKind::Panicked) && handler {
            if let Err(e) = &result {
                self.slot.fault_of(entry, e);
            }
        }
        result
    }

    /// What `invoke` does for [`Call::Event`]: handles `event` on `instance` and returns the
    /// handler's answer (empty if it gave none), with every guard a call gets: the wait chain,
    /// the event's stamp (its source and id), the reply size limit on the answer, the plugin's
    /// metrics and the delivery's record, and a panic reported as the plugin's fault.
    ///
    /// Events handled back to back through one invoker share one stamp scope
    /// ([`stamp::EventStamps`]), opened by the first and closed by the next other call or when
    /// the invoker is dropped: each event's stamp is set in place, without the save and restore
    /// that [`stamp::enter`] makes around every call.
    fn deliver_event(
        &mut self,
        instance: &mut Option<PluginInstanceBox>,
        event: &Event,
        (chain, work, started): (Chain, u64, Instant),
    ) -> Result<Payload, PluginError> {
        let slot = self.slot;
        let stamps = self.events.get_or_insert_with(stamp::events);
        stamps.set(&event.source, event.id);
        let result = with_current(chain, work, || match instance.as_mut() {
            Some(i) => i
                .on_event(event)
                .into_result()
                .map(|answer| answer.into_option().unwrap_or_default()),
            None => Err(gone()),
        });
        stamps.clear();
        let result = result.and_then(|answer| match slot.over_limit("on_event", answer.len()) {
            Some(e) => Err(e),
            None => Ok(answer),
        });
        let finished = Instant::now();
        self.finished = Some(finished);
        let took = finished.saturating_duration_since(started);
        let failed = result.as_ref().err().map(|e| e.kind);
        slot.metrics.record_event(took, failed);
        if self.recorder.enabled() {
            // An event carries no token of its own: only the plugin's deactivation cancels it.
            let outcome = if slot.stopping.is_cancelled() {
                Outcome::Cancelled(u64::try_from(took.as_millis()).unwrap_or(u64::MAX))
            } else {
                Outcome::of(&result)
            };
            self.record_delivery(event, work, (started, finished, took), outcome);
        }
        if failed == Some(ErrorKind::Panicked) {
            if let Err(e) = &result {
                slot.fault_of("on_event", e);
            }
        }
        result
    }

    /// Records a delivery of `event` as work `work`: a compact [`Delivered`] when it
    /// succeeded (written with the run's others), an [`Entry`] of its own when it did not.
    fn record_delivery(
        &mut self,
        event: &Event,
        work: u64,
        (started, finished, took): (Instant, Instant, Duration),
        outcome: Outcome,
    ) {
        let started_us = match self.last {
            Some((at, us)) if at == started => us,
            _ => self.recorder.micros(started),
        };
        let took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.last = Some((finished, started_us.saturating_add(took_us)));
        if !matches!(outcome, Outcome::Ok) {
            self.recorder.push(Entry {
                id: work,
                parent: event.id,
                kind: RecordKind::Delivery,
                name: Label::new(&event.event_type),
                // Filled in from the publication's record when a snapshot is taken.
                caller: Label::new(""),
                plugin: self.plugin.clone(),
                waited_us: 0,
                started_us,
                finished_us: started_us.saturating_add(took_us),
                outcome,
            });
            return;
        }
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(BATCH);
        }
        self.pending.push(Delivered {
            id: work,
            event: event.id,
            started_us,
            took_us: u32::try_from(took_us).unwrap_or(u32::MAX),
            plugin: self.plugin.clone(),
        });
        if self.pending.len() >= BATCH {
            self.flush();
        }
    }
}

impl Drop for Invoker<'_> {
    fn drop(&mut self) {
        self.flush();
        PENDING.set(std::mem::take(&mut self.pending));
    }
}

/// The error for a call on an instance that was dropped already.
fn gone() -> PluginError {
    PluginError::new(ErrorKind::Cancelled, "the plugin instance is gone")
}

/// The vtable call itself (also what an isolated plugin's worker runs on its instance).
pub(crate) fn run(
    instance: &mut Option<PluginInstanceBox>,
    call: Call,
) -> Result<Answer, PluginError> {
    if let Call::Drop = call {
        // The plugin value itself was dropped at the end of `deactivate`, inside the plugin's
        // fence; what is dropped here is the fenced shell.
        drop(instance.take());
        return Ok(Answer::Done);
    }
    let Some(i) = instance.as_mut() else {
        return Err(gone());
    };
    match call {
        Call::Activate => i.activate().into_result().map(|()| Answer::Done),
        Call::Deactivate => i.deactivate().into_result().map(|()| Answer::Done),
        Call::Command { command, args } => i
            .handle_command(command.as_str().into(), &args)
            .into_result()
            .map(Answer::Payload),
        Call::Event(event) => i
            .on_event(&event)
            .into_result()
            .map(|r| Answer::Payload(r.into_option().unwrap_or_default())),
        Call::Message(message) => i
            .on_message(&message)
            .into_result()
            .map(|r| Answer::Payload(r.into_option().unwrap_or_default())),
        Call::Hook { hook, data } => i
            .on_hook(hook.as_ref().into(), &data)
            .into_result()
            .map(Answer::Hook),
        Call::Before(request) => i
            .before_command(&request)
            .into_result()
            .map(|action| Answer::Middleware(Box::new(action))),
        Call::After(pair) => {
            let (request, prior) = *pair;
            let passed = prior.as_ref().err().cloned();
            match i.after_command(&request, prior.into()).into_result() {
                // The command's own error passed through unchanged is not a failure of the
                // middleware (nor a panic of it, if the command panicked).
                Err(e) if passed.as_ref() == Some(&e) => Ok(Answer::Passed(Err(e))),
                other => other.map(|p| Answer::Passed(Ok(p))),
            }
        }
        Call::Provide {
            provider,
            method,
            args,
        } => i
            .provide(provider.as_ref().into(), method.as_ref().into(), &args)
            .into_result()
            .map(Answer::Payload),
        Call::SaveState => i
            .save_state()
            .into_result()
            .map(|s| Answer::State(s.into_option())),
        Call::RestoreState {
            state,
            from_version,
        } => i
            .restore_state(state, from_version.as_str().into())
            .into_result()
            .map(|()| Answer::Done),
        Call::Drop => Ok(Answer::Done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_answers_survive_a_bincode_round_trip() {
        let call = Call::After(Box::new((
            CommandRequest {
                id: 7,
                command: "greet".into(),
                caller: "host".into(),
                args: Payload::empty(),
            },
            Err(PluginError::invalid("no")),
        )));
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&call, config).expect("encode");
        let (back, _): (Call, usize) =
            bincode::serde::decode_from_slice(&bytes, config).expect("decode");
        assert!(matches!(back, Call::After(pair) if pair.0.id == 7 && pair.1.is_err()));
        let answer = Answer::Middleware(Box::new(MiddlewareAction::Respond(
            Ok(Payload::empty()).into(),
        )));
        let bytes = bincode::serde::encode_to_vec(&answer, config).expect("encode");
        let (back, _): (Answer, usize) =
            bincode::serde::decode_from_slice(&bytes, config).expect("decode");
        assert!(matches!(
            back,
            Answer::Middleware(action) if matches!(*action, MiddlewareAction::Respond(_))
        ));
    }

    #[test]
    fn answer_sizes_count_what_reaches_the_caller() {
        let big = Payload::from_json_str(&format!("\"{}\"", "x".repeat(98))).expect("json");
        assert_eq!(big.len(), 100);
        assert_eq!(Answer::Payload(big.clone()).size(), 100);
        assert_eq!(Answer::Hook(HookOutcome::Continue(big.clone())).size(), 100);
        assert_eq!(Answer::Passed(Ok(big)).size(), 100);
        assert_eq!(Answer::Hook(HookOutcome::Veto("no".into())).size(), 0);
        assert_eq!(Answer::Done.size(), 0);
    }
}
