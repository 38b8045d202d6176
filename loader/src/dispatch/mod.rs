//! The operations of the context API, shared by plugins (through their context vtable) and the
//! host application (through [`Host`](crate::Host)): capability checks, cycle checks, routing,
//! queueing and deadlines.

pub(crate) mod routes;

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crossbeam_channel::bounded;
use plugin_api::{
    CommandRequest, ErrorKind, Event, HookOutcome, Message, MiddlewareAction, Payload, PluginError,
    PluginInstanceBox,
};

use crate::{
    dispatch::routes::{Route, Target},
    host::HostInner,
    observe::deadletter::DeadLetter,
    observe::recorder::{Entry, Label, Outcome, RecordKind},
    plan::capability,
    runtime::reply::{Answerable, ReplyTo, Waited, Waiter},
    runtime::slot::{Chain, Delivery, Job, JobEnv, JobRun, Slot},
};

/// Each subscriber's answer to `emit_and_collect`: plugin name and what its handler returned.
pub type CollectedResults = Vec<(String, Result<Payload, PluginError>)>;

/// Who is asking: a plugin (with its granted capabilities) or the host application.
pub(crate) struct Caller<'a> {
    /// Plugin name, or `host`.
    pub name: &'a str,
    /// `None` for the host application, which may do anything.
    pub granted: Option<&'a [String]>,
    /// Plugins blocked on this call, including the caller if it is on its dispatcher thread.
    pub chain: Chain,
    /// The work during which the call is made (0: none).
    pub work: u64,
}

impl Caller<'_> {
    pub fn host() -> Caller<'static> {
        Caller {
            name: "host",
            granted: None,
            chain: Chain::empty(),
            work: 0,
        }
    }

    /// Refuses the operation unless `capability` is granted.
    pub fn require(&self, capability: &str) -> Result<(), PluginError> {
        match self.granted {
            None => Ok(()),
            Some(granted) if capability::allows(granted, capability) => Ok(()),
            Some(_) => {
                log::warn!(
                    "permission denied: plugin {} lacks capability {capability}",
                    self.name
                );
                Err(PluginError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "permission denied: plugin {} lacks capability {capability} (declare it in the manifest; the host config may also revoke it)",
                        self.name
                    ),
                ))
            }
        }
    }

    fn cycle_to(&self, target: &str) -> Result<(), PluginError> {
        if self.chain.iter().any(|p| &**p == target) {
            let path: Vec<&str> = self
                .chain
                .iter()
                .map(|p| &**p)
                .chain(std::iter::once(target))
                .collect();
            return Err(PluginError::new(
                ErrorKind::Cycle,
                format!(
                    "call cycle: {} (a plugin cannot wait on a call that needs its own dispatcher thread)",
                    path.join(" -> ")
                ),
            ));
        }
        Ok(())
    }
}

fn kind_word(kind: RecordKind) -> &'static str {
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

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a job needs to finish the call it serves: the parts of its record only the caller
/// knew, and where its answer goes. Descriptions are built only when something goes wrong.
pub(crate) struct CallTail {
    work: u64,
    parent: u64,
    kind: RecordKind,
    name: Label,
    /// When the call was queued and who made it, when recording.
    record: Option<(u64, Label)>,
    reply: ReplyTo,
}

impl CallTail {
    /// Records the call (when recording) and sends its answer; returns what the plugin's thread
    /// counts: the error kind if the call failed, and when it finished if the clock was read.
    pub fn finish<T: Answerable>(
        self,
        env: &JobEnv<'_>,
        result: Result<T, PluginError>,
    ) -> (Option<ErrorKind>, Option<Instant>) {
        let failed = result.as_ref().err().map(|e| e.kind);
        let mut finished = None;
        if let Some((queued_us, caller)) = self.record {
            let at = Instant::now();
            finished = Some(at);
            let started_us = env.recorder.micros(env.started);
            let took = at.saturating_duration_since(env.started).as_micros();
            env.recorder.push(Entry {
                id: self.work,
                parent: self.parent,
                kind: self.kind,
                name: self.name.clone(),
                caller,
                plugin: env.plugin.clone(),
                waited_us: u32::try_from(started_us.saturating_sub(queued_us)).unwrap_or(u32::MAX),
                started_us,
                finished_us: started_us.saturating_add(u64::try_from(took).unwrap_or(u64::MAX)),
                outcome: Outcome::of(&result),
            });
        }
        if !self.reply.send(result) {
            env.slot
                .metrics
                .late_replies
                .fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "late reply from plugin {} for {} {} dropped: the caller stopped waiting",
                env.slot.name,
                kind_word(self.kind),
                self.name.as_str()
            );
        }
        (failed, finished)
    }
}

/// The job body of a call of any kind: `f` runs on the plugin's thread, then the call is
/// finished as [`CallTail::finish`] says.
fn boxed<T: Answerable>(
    f: impl FnOnce(&mut PluginInstanceBox) -> Result<T, PluginError> + Send + 'static,
) -> impl FnOnce(CallTail) -> JobRun {
    move |tail| JobRun::Boxed(Box::new(move |instance, env| tail.finish(env, f(instance))))
}

/// A command for a plugin's thread: the most common call, carried in the queue itself rather
/// than in a boxed closure (an allocation on the caller's CPU freed on the plugin's costs more
/// than the rest of the hand-off).
pub(crate) struct CommandJob {
    /// The command's name as the plugin declared it.
    pub command: Label,
    pub args: Payload,
    pub tail: CallTail,
}

impl CommandJob {
    /// Runs the command on the plugin's thread.
    pub fn run(
        self,
        instance: &mut PluginInstanceBox,
        env: &JobEnv<'_>,
    ) -> (Option<ErrorKind>, Option<Instant>) {
        let result = instance
            .handle_command(self.command.as_str().into(), &self.args)
            .into_result();
        self.tail.finish(env, result)
    }
}

impl HostInner {
    pub(crate) fn next_id(&self) -> u64 {
        self.recorder.next_id()
    }

    pub(crate) fn timeout(&self, requested: Option<Duration>) -> Duration {
        requested.unwrap_or_else(|| self.config.call_timeout())
    }

    fn check_size(&self, what: &str, payload: &Payload) -> Result<(), PluginError> {
        if payload.len() > self.config.max_payload_bytes {
            return Err(PluginError::invalid(format!(
                "{what}: payload of {} bytes exceeds the limit of {} bytes",
                payload.len(),
                self.config.max_payload_bytes
            )));
        }
        Ok(())
    }

    /// Runs a job on `slot`'s thread and waits for its answer until `timeout`. `queued` is a
    /// clock reading the caller already took, if any (the record's queue time). `job` makes the
    /// job's body from what it needs to finish the call ([`CallTail`]).
    fn call_slot<T: Answerable>(
        &self,
        caller: &Caller<'_>,
        slot: &Arc<Slot>,
        (kind, name): (RecordKind, Arc<str>),
        (timeout, queued): (Duration, Option<Instant>),
        job: impl FnOnce(CallTail) -> JobRun,
    ) -> Result<T, PluginError> {
        caller.cycle_to(&slot.name)?;
        let work_id = self.next_id();
        let waiter = Waiter::new(work_id);
        let recorder = &self.recorder;
        let deadline = queued.unwrap_or_else(Instant::now) + timeout;
        // What only this side knows of the record; the plugin's thread writes the rest (its own
        // copy of the plugin's name, the times), so little crosses between the CPUs.
        let tail = CallTail {
            work: work_id,
            parent: caller.work,
            kind,
            name: Label::new(&name),
            record: recorder.enabled().then(|| {
                (
                    queued.map_or_else(|| recorder.now(), |at| recorder.micros(at)),
                    Label::new(caller.name),
                )
            }),
            reply: waiter.reply_to(),
        };
        let job = Job {
            chain: caller.chain.clone(),
            work_id,
            run: job(tail),
        };
        slot.submit(job)?;
        match waiter.wait::<T>(deadline) {
            Waited::Answer(result) => result,
            Waited::TimedOut => {
                drop(waiter);
                let what = format!("{} {name}", kind_word(kind));
                slot.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
                // Missing the host's own deadline is a fault; a caller's shorter one is not.
                if timeout >= self.config.call_timeout() {
                    slot.mark_faulted(
                        format!("{what} missed its {} ms deadline", timeout.as_millis()),
                        true,
                    );
                }
                Err(PluginError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{what} timed out after {} ms (plugin {})",
                        timeout.as_millis(),
                        slot.name
                    ),
                ))
            }
            Waited::Cancelled => Err(PluginError::new(
                ErrorKind::Cancelled,
                format!(
                    "{} {name} cancelled: plugin {} was deactivated before answering",
                    kind_word(kind),
                    slot.name
                ),
            )),
        }
    }

    fn plugin_slot(&self, plugin: &str) -> Result<Arc<Slot>, PluginError> {
        let state = self.state.read();
        match state.slots.get(plugin) {
            Some(entry) if entry.slot.state().is_serving() => Ok(entry.slot.clone()),
            Some(entry) => Err(PluginError::not_found(format!(
                "plugin {plugin} is not active (state {})",
                entry.slot.state()
            ))),
            None => Err(PluginError::not_found(format!(
                "plugin not found: {plugin}"
            ))),
        }
    }

    // ---- commands -------------------------------------------------------------------------

    /// Runs a command through the middleware chain.
    pub(crate) fn execute(
        &self,
        caller: &Caller<'_>,
        command: &str,
        args: Payload,
        timeout: Option<Duration>,
    ) -> Result<Payload, PluginError> {
        self.check_size(command, &args)?;
        if caller.granted.is_some() {
            caller.require(&format!("call:{command}"))?;
        }
        let timeout = self.timeout(timeout);
        let now = Instant::now();
        let deadline = now + timeout;
        let (route, middleware) = {
            let state = self.state.read();
            let route = state.routes.commands.get(command).cloned();
            let mw: Vec<Arc<Slot>> = if route.is_some() {
                state
                    .routes
                    .middleware
                    .iter()
                    .filter(|m| !caller.chain.iter().any(|c| *c == m.slot.name))
                    .map(|m| m.slot.clone())
                    .collect()
            } else {
                Vec::new()
            };
            (route, mw)
        };
        let Some(route) = route else {
            return Err(PluginError::not_found(format!(
                "command not found: {command}"
            )));
        };
        if middleware.is_empty() {
            let reply = self.run_route(caller, command, route, args, (timeout, Some(now)));
            return self.check_reply(command, reply);
        }
        let mut request = CommandRequest {
            id: self.next_id(),
            command: command.into(),
            caller: caller.name.into(),
            args,
        };
        let mut entered: Vec<Arc<Slot>> = Vec::new();
        let mut answer: Option<Result<Payload, PluginError>> = None;
        for mw in &middleware {
            let req = request.clone();
            let remaining = deadline.saturating_duration_since(Instant::now());
            let step = self.call_slot(
                caller,
                mw,
                (RecordKind::Middleware, format!("before {command}").into()),
                (remaining, None),
                boxed(move |i| i.before_command(&req).into_result()),
            );
            match step {
                Ok(MiddlewareAction::Continue(next)) => {
                    request = next;
                    entered.push(mw.clone());
                }
                Ok(MiddlewareAction::Respond(result)) => {
                    answer = Some(result.into_result());
                    break;
                }
                Err(e) => {
                    answer = Some(Err(PluginError::new(
                        e.kind,
                        format!("middleware {} failed before {command}: {e}", mw.name),
                    )));
                    break;
                }
            }
        }
        let mut result = match answer {
            Some(r) => r,
            None => {
                // Middleware may rewrite the command name: route it again.
                let route = if request.command.as_str() == command {
                    Some(route)
                } else {
                    self.state
                        .read()
                        .routes
                        .commands
                        .get(request.command.as_str())
                        .cloned()
                };
                match route {
                    Some(route) => self.run_route(
                        caller,
                        request.command.as_str(),
                        route,
                        request.args.clone(),
                        (deadline.saturating_duration_since(Instant::now()), None),
                    ),
                    None => Err(PluginError::not_found(format!(
                        "command not found: {}",
                        request.command
                    ))),
                }
            }
        };
        for mw in entered.iter().rev() {
            let req = request.clone();
            let prior = result.clone();
            let remaining = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let outcome = self.call_slot(
                caller,
                mw,
                (RecordKind::Middleware, format!("after {command}").into()),
                (remaining, None),
                boxed(move |i| {
                    let passed = prior.as_ref().err().cloned();
                    match i.after_command(&req, prior.into()).into_result() {
                        // The command's own error passed through unchanged is not a failure of
                        // the middleware (nor a panic of it, if the command panicked).
                        Err(e) if passed.as_ref() == Some(&e) => Ok(Err(e)),
                        other => other.map(Ok),
                    }
                }),
            );
            result = match outcome {
                Ok(r) => r,
                Err(e) => Err(PluginError::new(
                    e.kind,
                    format!("middleware {} failed after {command}: {e}", mw.name),
                )),
            };
        }
        self.check_reply(command, result)
    }

    fn run_route(
        &self,
        caller: &Caller<'_>,
        command: &str,
        route: Route,
        args: Payload,
        (timeout, queued): (Duration, Option<Instant>),
    ) -> Result<Payload, PluginError> {
        match route {
            Route::Host(handler) => {
                let request = CommandRequest {
                    id: 0,
                    command: command.into(),
                    caller: caller.name.into(),
                    args,
                };
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&request)))
                    .unwrap_or_else(|_| {
                        Err(PluginError::new(
                            ErrorKind::Panicked,
                            format!("host command {command} panicked"),
                        ))
                    })
            }
            Route::Plugin { slot, short, full } => self.call_slot(
                caller,
                &slot,
                (RecordKind::Command, full),
                (timeout, queued),
                // A copy, not the route's shared name: the job is dropped on the plugin's thread.
                |tail| {
                    JobRun::Command(CommandJob {
                        command: Label::new(&short),
                        args,
                        tail,
                    })
                },
            ),
        }
    }

    // ---- events ---------------------------------------------------------------------------

    /// A new event, and the clock reading it was stamped with (for its record).
    fn make_event(
        &self,
        caller: &Caller<'_>,
        event_type: &str,
        data: Payload,
    ) -> Result<(Arc<Event>, Instant), PluginError> {
        self.check_size(event_type, &data)?;
        if event_type.is_empty() {
            return Err(PluginError::invalid("event type must not be empty"));
        }
        if caller.granted.is_some() {
            if event_type.starts_with("plugin:") {
                return Err(PluginError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "permission denied: plugin {} cannot emit {event_type}: plugin:* events come from the host only",
                        caller.name
                    ),
                ));
            }
            caller.require(&format!("emit:{event_type}"))?;
        }
        // One clock reading serves the timestamp and the record.
        let now = Instant::now();
        let event = Arc::new(Event {
            id: self.next_id(),
            parent: caller.work,
            event_type: event_type.into(),
            source: caller.name.into(),
            timestamp_ms: self.recorder.wall_ms(now),
            data,
        });
        Ok((event, now))
    }

    fn targets(&self, event_type: &str) -> Arc<[Target]> {
        if let Some(t) = self.state.read().routes.targets(event_type) {
            return t;
        }
        self.state.write().routes.resolve_targets(event_type)
    }

    /// Publishes an event to every subscriber; never blocks on a subscriber.
    pub(crate) fn emit(
        &self,
        caller: &Caller<'_>,
        event_type: &str,
        data: Payload,
    ) -> Result<u64, PluginError> {
        let (event, now) = self.make_event(caller, event_type, data)?;
        let id = event.id;
        self.publish(caller, event, now);
        Ok(id)
    }

    fn publish(&self, caller: &Caller<'_>, event: Arc<Event>, now: Instant) {
        let targets = self.targets(&event.event_type);
        self.record_event(&event, targets.len(), now);
        for target in targets.iter() {
            match target {
                Target::Plugin(slot) => {
                    let delivery = Delivery {
                        event: event.clone(),
                        chain: caller.chain.clone(),
                        reply: None,
                    };
                    match slot.deliver(delivery) {
                        Ok(None) => {}
                        Ok(Some(dropped)) => self.dead_letter(
                            &slot.name,
                            &dropped,
                            "dropped from a full event queue",
                        ),
                        Err(()) => self.dead_letter(&slot.name, &event, "plugin not taking events"),
                    }
                }
                Target::Host(sub) => deliver_host(sub, &event),
            }
        }
    }

    /// Publishes an event and waits for every plugin subscriber's answer.
    pub(crate) fn emit_and_collect(
        &self,
        caller: &Caller<'_>,
        event_type: &str,
        data: Payload,
        timeout: Option<Duration>,
    ) -> Result<CollectedResults, PluginError> {
        let (event, now) = self.make_event(caller, event_type, data)?;
        let timeout = self.timeout(timeout);
        let targets = self.targets(event_type);
        self.record_event(&event, targets.len(), now);
        let plugins: Vec<&Arc<Slot>> = targets
            .iter()
            .filter_map(|t| match t {
                Target::Plugin(s) => Some(s),
                Target::Host(_) => None,
            })
            .collect();
        let (tx, rx) = bounded(plugins.len().max(1));
        let mut results: Vec<(String, Option<Result<Payload, PluginError>>)> = Vec::new();
        for slot in &plugins {
            let pending = if let Err(e) = caller.cycle_to(&slot.name) {
                Some(Err(e))
            } else {
                let delivery = Delivery {
                    event: event.clone(),
                    chain: caller.chain.clone(),
                    reply: Some(Box::new(tx.clone())),
                };
                match slot.deliver(delivery) {
                    Ok(None) => None,
                    Ok(Some(dropped)) => {
                        self.dead_letter(&slot.name, &dropped, "dropped from a full event queue");
                        None
                    }
                    Err(()) => Some(Err(crate::runtime::slot::not_serving(&slot.name))),
                }
            };
            results.push((slot.name.to_string(), pending));
        }
        drop(tx);
        for target in targets.iter() {
            if let Target::Host(sub) = target {
                deliver_host(sub, &event);
            }
        }
        let deadline = Instant::now() + timeout;
        while results.iter().any(|(_, r)| r.is_none()) {
            match rx.recv_deadline(deadline) {
                Ok((name, result)) => {
                    if let Some(entry) = results
                        .iter_mut()
                        .find(|(n, r)| r.is_none() && n.as_str() == &*name)
                    {
                        entry.1 = Some(result);
                    }
                }
                Err(_) => break,
            }
        }
        Ok(results
            .into_iter()
            .map(|(name, r)| {
                let r = r.unwrap_or_else(|| {
                    Err(PluginError::new(
                        ErrorKind::Timeout,
                        format!(
                            "subscriber {name} did not answer event {event_type} within {} ms (or dropped it from a full queue)",
                            timeout.as_millis()
                        ),
                    ))
                });
                if let Err(e) = &r {
                    log::warn!("plugin {name}: event {event_type} failed: {e}");
                }
                (name, r)
            })
            .collect())
    }

    fn record_event(&self, event: &Event, subscribers: usize, at: Instant) {
        if self.recorder.enabled() {
            let now = self.recorder.micros(at);
            self.recorder.push(Entry {
                id: event.id,
                parent: event.parent,
                kind: RecordKind::Event,
                name: Label::new(&event.event_type),
                caller: Label::new(&event.source),
                plugin: Label::new(""),
                waited_us: 0,
                started_us: now,
                finished_us: now,
                outcome: Outcome::Published(subscribers),
            });
        }
    }

    pub(crate) fn dead_letter(&self, plugin: &str, event: &Event, why: &str) {
        log::debug!(
            "event {} #{} not delivered to {plugin}: {why}",
            event.event_type,
            event.id
        );
        self.dead_letters.push(DeadLetter {
            timestamp_ms: now_ms(),
            kind: "event".to_owned(),
            id: event.id,
            name: event.event_type.to_string(),
            source: event.source.to_string(),
            target: plugin.to_owned(),
            reason: why.to_owned(),
        });
    }

    fn dead_message(&self, caller: &Caller<'_>, plugin: &str, error: &PluginError) {
        self.dead_letters.push(DeadLetter {
            timestamp_ms: now_ms(),
            kind: "message".to_owned(),
            id: 0,
            name: String::new(),
            source: caller.name.to_owned(),
            target: plugin.to_owned(),
            reason: error.to_string(),
        });
    }

    /// Replies are payloads crossing the boundary too: the same size limit applies.
    fn check_reply(
        &self,
        what: &str,
        reply: Result<Payload, PluginError>,
    ) -> Result<Payload, PluginError> {
        match reply {
            Ok(p) if p.len() > self.config.max_payload_bytes => Err(PluginError::invalid(format!(
                "{what}: reply of {} bytes exceeds the limit of {} bytes",
                p.len(),
                self.config.max_payload_bytes
            ))),
            other => other,
        }
    }

    // ---- messages and RPC -----------------------------------------------------------------

    fn message_slot(&self, caller: &Caller<'_>, plugin: &str) -> Result<Arc<Slot>, PluginError> {
        caller.require(&format!("message:{plugin}"))?;
        let slot = self.plugin_slot(plugin)?;
        let accepts = self
            .state
            .read()
            .slots
            .get(plugin)
            .is_some_and(|e| e.manifest.accepts_messages);
        if !accepts {
            return Err(PluginError::new(
                ErrorKind::Unsupported,
                format!("plugin {plugin} does not accept messages (its manifest does not say accepts_messages)"),
            ));
        }
        Ok(slot)
    }

    /// Sends a message; with `wait`, waits for the reply (request-reply / RPC).
    pub(crate) fn message(
        &self,
        caller: &Caller<'_>,
        plugin: &str,
        method: &str,
        payload: Payload,
        wait: Option<Option<Duration>>,
    ) -> Result<Payload, PluginError> {
        self.check_size(plugin, &payload)?;
        let slot = match self.message_slot(caller, plugin) {
            Ok(slot) => slot,
            Err(e) => {
                if wait.is_none() && e.kind != ErrorKind::PermissionDenied {
                    // Fire-and-forget to a plugin that is gone: nobody else will hear of it.
                    self.dead_message(caller, plugin, &e);
                }
                return Err(e);
            }
        };
        let message = Message {
            id: self.next_id(),
            from: caller.name.into(),
            method: method.into(),
            payload,
            wants_reply: wait.is_some(),
        };
        let label = if method.is_empty() {
            (
                RecordKind::Message,
                format!("#{} to {plugin}", message.id).into(),
            )
        } else {
            (RecordKind::Rpc, format!("{plugin}.{method}").into())
        };
        match wait {
            Some(timeout) => self.call_slot(
                caller,
                &slot,
                label,
                (self.timeout(timeout), None),
                boxed(move |i| {
                    i.on_message(&message)
                        .into_result()
                        .map(|r| r.into_option().unwrap_or_default())
                }),
            ),
            None => {
                let name = slot.name.clone();
                let job = Job {
                    chain: Chain::empty(),
                    work_id: message.id,
                    run: JobRun::Boxed(Box::new(move |i, _env| {
                        let r = i.on_message(&message).into_result();
                        let failed = match r {
                            Ok(_) => None,
                            Err(e) => {
                                log::warn!(
                                    "plugin {name}: message #{} from {} failed: {e}",
                                    message.id,
                                    message.from
                                );
                                Some(e.kind)
                            }
                        };
                        (failed, None)
                    })),
                };
                if let Err(e) = slot.submit(job) {
                    self.dead_message(caller, plugin, &e);
                    return Err(e);
                }
                Ok(Payload::empty())
            }
        }
    }

    // ---- hooks and providers --------------------------------------------------------------

    /// Runs hook `name` as a waterfall: each handler gets the previous one's data.
    ///
    /// Policy: a veto stops the run and names the plugin; a handler that fails or panics also
    /// stops it, naming the plugin. No handlers: the data comes back unchanged.
    pub(crate) fn run_hook(
        &self,
        caller: &Caller<'_>,
        name: &str,
        mut data: Payload,
    ) -> Result<Payload, PluginError> {
        self.check_size(name, &data)?;
        caller.require(&format!("hook:run:{name}"))?;
        let handlers: Vec<Arc<Slot>> = self
            .state
            .read()
            .routes
            .hooks
            .get(name)
            .map(|l| l.iter().map(|r| r.slot.clone()).collect())
            .unwrap_or_default();
        for slot in handlers {
            let hook: Arc<str> = Arc::from(name);
            let input = data.clone();
            let outcome = self.call_slot(
                caller,
                &slot,
                (RecordKind::Hook, name.into()),
                (self.timeout(None), None),
                boxed(move |i| i.on_hook(hook.as_ref().into(), &input).into_result()),
            );
            match outcome {
                Ok(HookOutcome::Continue(next)) => data = next,
                Ok(HookOutcome::Veto(reason)) => {
                    return Err(PluginError::new(
                        ErrorKind::Vetoed,
                        format!("hook {name} vetoed by {}: {reason}", slot.name),
                    ))
                }
                Err(e) => {
                    return Err(PluginError::new(
                        e.kind,
                        format!("hook {name} failed in plugin {}: {e}", slot.name),
                    ))
                }
            }
        }
        Ok(data)
    }

    /// Calls the highest-priority provider of `provider`.
    pub(crate) fn provider_call(
        &self,
        caller: &Caller<'_>,
        provider: &str,
        method: &str,
        args: Payload,
        timeout: Option<Duration>,
    ) -> Result<Payload, PluginError> {
        self.check_size(provider, &args)?;
        caller.require(&format!("provider:{provider}"))?;
        let slot = self
            .state
            .read()
            .routes
            .providers
            .get(provider)
            .and_then(|l| l.first())
            .map(|r| r.slot.clone())
            .ok_or_else(|| PluginError::not_found(format!("provider not found: {provider}")))?;
        let p: Arc<str> = Arc::from(provider);
        let m: Arc<str> = Arc::from(method);
        let reply = self.call_slot(
            caller,
            &slot,
            (RecordKind::Provider, format!("{provider}.{method}").into()),
            (self.timeout(timeout), None),
            boxed(move |i| {
                i.provide(p.as_ref().into(), m.as_ref().into(), &args)
                    .into_result()
            }),
        );
        self.check_reply(provider, reply)
    }
}

/// Queues an event for a host subscriber, dropping its oldest when full.
fn deliver_host(sub: &crate::dispatch::routes::HostSubscriber, event: &Arc<Event>) {
    let mut item = event.clone();
    loop {
        match sub.tx.try_send(item) {
            Ok(()) => return,
            Err(crossbeam_channel::TrySendError::Full(back)) => {
                item = back;
                let _ = sub.rx.try_recv();
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return,
        }
    }
}
