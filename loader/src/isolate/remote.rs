//! An isolated plugin's instance as the host's plugin thread holds it: a
//! [`PluginInstance`] whose every method sends the [`Call`] to the child and waits for the
//! [`Answer`], serving the child's context requests meanwhile on the waiting thread.
//!
//! Being a `PluginInstance` like any other, it goes through the same `invoke` as an in-process
//! instance (wait chain, reply limit, metrics, records, faults), and the plugin's thread, queues
//! and slot do not know the difference.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
    time::{Duration, Instant},
};

use std::collections::VecDeque;

use abi_stable::std_types::{ROption, RResult, RStr, RVec};
use crossbeam_channel::{RecvTimeoutError, TryRecvError};
use parking_lot::Mutex;
use plugin_api::{
    abi::PluginInstance, CancellationToken, CommandRequest, Event, HookOutcome, Message,
    MiddlewareAction, Payload, PluginError,
};

use super::{
    broker,
    process::{Inbound, Process, Turned},
    wire::{ToChild, ToHost},
};
use crate::{
    observe::recorder::Label,
    runtime::{
        call::{mismatch, Answer, Call},
        slot::SendAhead,
        stamp,
    },
};

/// How long a dropped instance's process may take to exit before it is killed.
const EXIT_BOUND: Duration = Duration::from_secs(5);

/// How often a thread waiting on the child looks at its call's cancellation token. The token
/// is a flag with no wake-up of its own; looking costs a few loads, and only while a call is
/// in flight.
const CANCEL_POLL: Duration = Duration::from_millis(10);

/// The host's handle on an instance living in a child process.
pub(crate) struct RemoteInstance {
    pub process: Arc<Process>,
    /// How long `activate` may take before the child is killed.
    pub activate_bound: Duration,
    /// How long `deactivate` may take, and how long the child may take to exit when dropped.
    pub grace: Duration,
    /// Events written to the child ahead of their delivery.
    pub ahead: Arc<Ahead>,
}

/// The events written to a child ahead of their delivery ([`SendAhead`]), oldest first, by id.
pub(crate) struct Ahead {
    process: Arc<Process>,
    sent: Mutex<VecDeque<u64>>,
}

impl Ahead {
    pub fn new(process: Arc<Process>) -> Arc<Ahead> {
        Arc::new(Ahead {
            process,
            sent: Mutex::new(VecDeque::new()),
        })
    }
}

impl SendAhead for Ahead {
    fn send_ahead(&self, events: &[Arc<Event>]) {
        if events.is_empty() {
            return;
        }
        // Written only if the child takes it; a failed write means the child is gone, and each
        // delivery then finds that out for itself.
        if self.process.send(&ToChild::Events(events.to_vec())).is_ok() {
            self.sent.lock().extend(events.iter().map(|e| e.id));
        }
    }
}

impl RemoteInstance {
    /// Sends `call` and waits for its answer, serving the child's requests meanwhile. With a
    /// `bound`, a child that has not answered by then is killed.
    ///
    /// It first takes the answers of events written ahead ([`SendAhead`]) and never delivered
    /// (a run cut short), so that its own answer is the one it gets.
    fn invoke(&self, call: Call, bound: Option<Duration>) -> Result<Answer, PluginError> {
        let process = &self.process;
        let entry = call.entry();
        let undelivered = std::mem::take(&mut *self.ahead.sent.lock());
        for _ in undelivered {
            let _ = self.wait(None, None, entry);
        }
        process.begin(matches!(call, Call::Deactivate))?;
        // The stamp `invoke` set for this call on this thread travels with it; the child's
        // handler reads it there. Its token stays here: cancelling sends a frame.
        let (stamp, token) = match stamp::current_parts() {
            Some((caller, id, token)) => (Some((caller, id)), Some((id, token))),
            None => (None, None),
        };
        // A failed write means the child is gone: its end arrives in the inbox.
        let _ = process.send(&ToChild::Call { call, stamp });
        self.wait(bound, token, entry)
    }

    /// Waits for the answer to event `id`, which was written ahead: the next answer to come.
    fn delivered(&self, id: u64) -> Result<Answer, PluginError> {
        self.process.begin(false)?;
        let token = stamp::inherited().map(|t| (id, t));
        self.wait(None, token, "on_event")
    }

    /// Waits for the next answer, serving the child's requests meanwhile, and telling the
    /// child when `token` (the call's id and token) is cancelled; with a `bound`, a child that
    /// has not answered by then is killed.
    ///
    /// This thread reads the child's output itself while it waits, when it can take the turn
    /// ([`Process::take_turn`]); what the reader thread read before that is in the inbox, and
    /// is taken first.
    fn wait(
        &self,
        bound: Option<Duration>,
        mut token: Option<(u64, CancellationToken)>,
        entry: &str,
    ) -> Result<Answer, PluginError> {
        let process = &self.process;
        let mut deadline = bound.map(|b| (Instant::now() + b, b));
        // Whether this thread holds the turn, and whether it may still take it.
        let mut reading = false;
        let mut can_read = true;
        let outcome = loop {
            if let Some((id, t)) = &token {
                if t.is_cancelled() {
                    let _ = process.send(&ToChild::Cancel { id: *id });
                    token = None;
                }
            }
            // This step waits until the bound, or until the token is due another look.
            let until = match (deadline, &token) {
                (Some((at, _)), None) => Some(at),
                (Some((at, _)), Some(_)) => Some(at.min(Instant::now() + CANCEL_POLL)),
                (None, Some(_)) => Some(Instant::now() + CANCEL_POLL),
                (None, None) => None,
            };
            let handed = match process.inbox.try_recv() {
                Ok(inbound) => Some(inbound),
                Err(TryRecvError::Disconnected) => Some(Inbound::Ended),
                Err(TryRecvError::Empty) => None,
            };
            let got = if let Some(inbound) = handed {
                Some(inbound)
            } else if can_read && (reading || process.take_turn()) {
                if !reading {
                    // Look at the inbox once more: the reader thread may have read the answer
                    // just before it gave the turn up. From now on only this thread reads.
                    reading = true;
                    continue;
                }
                let timeout = until.map(|at| at.saturating_duration_since(Instant::now()));
                match process.read_turn(timeout) {
                    Turned::Frame(ToHost::Answer(result)) => Some(Inbound::Answer(result)),
                    Turned::Frame(ToHost::Request {
                        id,
                        in_call: true,
                        request,
                    }) => Some(Inbound::Request { id, request }),
                    Turned::Frame(ToHost::Request { id, request, .. }) => {
                        process.serve_aside(id, request);
                        continue;
                    }
                    // Only the start is answered so; the reader thread read it long ago.
                    Turned::Frame(ToHost::Ready | ToHost::Failed(_)) => continue,
                    Turned::Timeout => None,
                    Turned::Ended => {
                        // The reader thread has the turn and ends the child; its end comes
                        // through the inbox.
                        reading = false;
                        can_read = false;
                        continue;
                    }
                }
            } else {
                can_read = false;
                let got = match until {
                    Some(at) => process.inbox.recv_deadline(at),
                    None => process
                        .inbox
                        .recv()
                        .map_err(|_| RecvTimeoutError::Disconnected),
                };
                match got {
                    Ok(inbound) => Some(inbound),
                    Err(RecvTimeoutError::Disconnected) => Some(Inbound::Ended),
                    Err(RecvTimeoutError::Timeout) => None,
                }
            };
            match got {
                Some(Inbound::Answer(result)) => break result,
                Some(Inbound::Request { id, request }) => {
                    // Serving may take long (the request may be a call to another plugin): the
                    // reader thread reads the plugin's other traffic meanwhile.
                    if reading {
                        process.release_turn();
                        reading = false;
                    }
                    let reply = broker::serve(&process.context, request);
                    process.reply(id, reply);
                }
                Some(Inbound::Ended) => break Err(process.ended_error()),
                None => {
                    let bound_passed = deadline.is_some_and(|(at, _)| Instant::now() >= at);
                    if !bound_passed {
                        // Only a look at the token was due.
                        continue;
                    }
                    if let Some((_, bound)) = deadline.take() {
                        process.kill(&format!(
                            "{entry} did not return within {} ms",
                            bound.as_millis()
                        ));
                    }
                }
            }
        };
        if reading {
            process.release_turn();
        }
        outcome
    }

    /// [`RemoteInstance::invoke`] behind a fence: host code must not unwind through the
    /// instance's vtable.
    fn fenced<T>(
        &self,
        call: Call,
        bound: Option<Duration>,
        shape: impl FnOnce(Answer) -> Result<T, PluginError>,
    ) -> RResult<T, PluginError> {
        self.fence(|| self.invoke(call, bound).and_then(shape))
    }

    /// Runs `f` behind the fence of [`RemoteInstance::fenced`].
    fn fence<T>(&self, f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, PluginError> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => r.into(),
            Err(_) => RResult::RErr(PluginError::failed(format!(
                "the host failed while calling plugin {}'s process",
                self.process.name
            ))),
        }
    }
}

impl Drop for RemoteInstance {
    fn drop(&mut self) {
        self.process.close();
        // A worker exits as soon as it reads the end of its input; one that does not within a
        // few seconds (or the grace, if shorter) is not going to.
        if !self.process.wait_reaped(self.grace.min(EXIT_BOUND)) {
            self.process
                .kill("it did not exit after the host closed its input");
            self.process.wait_reaped(self.grace);
        }
    }
}

fn done(answer: Answer) -> Result<(), PluginError> {
    match answer {
        Answer::Done => Ok(()),
        other => Err(mismatch("a done", &other)),
    }
}

fn payload(answer: Answer) -> Result<Payload, PluginError> {
    answer.into_payload()
}

impl PluginInstance for RemoteInstance {
    fn activate(&mut self) -> RResult<(), PluginError> {
        self.fenced(Call::Activate, Some(self.activate_bound), done)
    }

    fn deactivate(&mut self) -> RResult<(), PluginError> {
        self.fenced(Call::Deactivate, Some(self.grace), done)
    }

    fn handle_command(
        &mut self,
        command: RStr<'_>,
        args: &Payload,
    ) -> RResult<Payload, PluginError> {
        let call = Call::Command {
            command: Label::new(command.as_str()),
            args: args.clone(),
        };
        self.fenced(call, None, payload)
    }

    fn on_event(&mut self, event: &Event) -> RResult<ROption<Payload>, PluginError> {
        // An event written ahead is not sent again (nor copied): its answer is the next to come.
        let ahead = {
            let mut sent = self.ahead.sent.lock();
            let front = sent.front() == Some(&event.id);
            if front {
                sent.pop_front();
            }
            front
        };
        if ahead {
            return self.fence(|| {
                self.delivered(event.id)
                    .and_then(|a| payload(a).map(ROption::RSome))
            });
        }
        let call = Call::Event(Arc::new(event.clone()));
        self.fenced(call, None, |a| payload(a).map(ROption::RSome))
    }

    fn on_message(&mut self, message: &Message) -> RResult<ROption<Payload>, PluginError> {
        let call = Call::Message(Box::new(message.clone()));
        self.fenced(call, None, |a| payload(a).map(ROption::RSome))
    }

    fn on_hook(&mut self, hook: RStr<'_>, data: &Payload) -> RResult<HookOutcome, PluginError> {
        let call = Call::Hook {
            hook: Arc::from(hook.as_str()),
            data: data.clone(),
        };
        self.fenced(call, None, |a| match a {
            Answer::Hook(outcome) => Ok(outcome),
            other => Err(mismatch("a hook", &other)),
        })
    }

    fn before_command(
        &mut self,
        request: &CommandRequest,
    ) -> RResult<MiddlewareAction, PluginError> {
        let call = Call::Before(Box::new(request.clone()));
        self.fenced(call, None, |a| match a {
            Answer::Middleware(action) => Ok(*action),
            other => Err(mismatch("a middleware", &other)),
        })
    }

    fn after_command(
        &mut self,
        request: &CommandRequest,
        result: RResult<Payload, PluginError>,
    ) -> RResult<Payload, PluginError> {
        let call = Call::After(Box::new((request.clone(), result.into_result())));
        match self.fenced(call, None, |a| match a {
            Answer::Passed(passed) => Ok(passed),
            other => Err(mismatch("a middleware", &other)),
        }) {
            RResult::ROk(passed) => passed.into(),
            RResult::RErr(e) => RResult::RErr(e),
        }
    }

    fn provide(
        &mut self,
        provider: RStr<'_>,
        method: RStr<'_>,
        args: &Payload,
    ) -> RResult<Payload, PluginError> {
        let call = Call::Provide {
            provider: Arc::from(provider.as_str()),
            method: Arc::from(method.as_str()),
            args: args.clone(),
        };
        self.fenced(call, None, payload)
    }

    fn save_state(&mut self) -> RResult<ROption<RVec<u8>>, PluginError> {
        self.fenced(Call::SaveState, Some(self.activate_bound), |a| match a {
            Answer::State(state) => Ok(state.into()),
            other => Err(mismatch("a state", &other)),
        })
    }

    fn restore_state(
        &mut self,
        state: RVec<u8>,
        from_version: RStr<'_>,
    ) -> RResult<(), PluginError> {
        let call = Call::RestoreState {
            state,
            from_version: from_version.as_str().to_owned(),
        };
        self.fenced(call, Some(self.activate_bound), done)
    }
}
