//! Publication: events go to every matching subscriber's queue without the publisher ever
//! waiting on a subscriber; `emit_and_collect` also gathers each plugin subscriber's answer.
//! What cannot be delivered becomes a dead letter.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crossbeam_channel::bounded;
use plugin_api::{ErrorKind, Event, Payload, PluginError};

use super::{
    routes::{HostSubscriber, Target},
    Caller, Dispatcher,
};
use crate::{
    observe::{
        deadletter::DeadLetter,
        recorder::{Entry, Label, Outcome, RecordKind},
    },
    runtime::slot::{not_serving, Delivery, Slot},
};

/// Each subscriber's answer to `emit_and_collect`: plugin name and what its handler returned.
pub type CollectedResults = Vec<(String, Result<Payload, PluginError>)>;

/// Milliseconds since the Unix epoch, for dead letters.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether `event_type` is a well-formed event type: not empty, no spaces or control
/// characters.
fn check_event_type(event_type: &str) -> Result<(), PluginError> {
    // Nearly every type is printable ASCII: one pass over the bytes decides it.
    if !event_type.is_empty() && event_type.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(());
    }
    if event_type.is_empty() {
        return Err(PluginError::invalid("event type must not be empty"));
    }
    if let Some(c) = event_type
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(PluginError::invalid(format!(
            "event type {event_type:?} contains {c:?}: event types have no spaces or control characters"
        )));
    }
    Ok(())
}

/// An event about to be published: the event, the subscribers it goes to, and when it was
/// stamped in the host's microseconds (for its record).
struct Publication {
    event: Arc<Event>,
    targets: Arc<[Target]>,
    now: u64,
}

impl Dispatcher {
    /// A new event, checked, and where it goes.
    fn make_event(
        &self,
        caller: &Caller<'_>,
        event_type: &str,
        data: Payload,
    ) -> Result<Publication, PluginError> {
        self.check_size(event_type, &data)?;
        // Only checked types get into the route cache: a type it knows needs no check.
        let cached = self.routes.read().targets(event_type);
        if cached.is_none() {
            check_event_type(event_type)?;
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
        // Resolved only for an emit that may go ahead, so that refused ones (ever-new types a
        // plugin may not emit) cannot churn the route cache.
        let targets = match cached {
            Some(targets) => targets,
            None => self.routes.write().resolve_targets(event_type),
        };
        // One clock reading, converted once, serves the timestamp and the record.
        let now = self.clock.micros(Instant::now());
        let event = Arc::new(Event {
            id: self.next_id(),
            parent: caller.work,
            event_type: event_type.into(),
            source: caller.name.into(),
            timestamp_ms: self.clock.wall_ms(now),
            data,
        });
        Ok(Publication {
            event,
            targets,
            now,
        })
    }

    /// Publishes an event to every subscriber; never blocks on a subscriber.
    pub(crate) fn emit(
        &self,
        caller: &Caller<'_>,
        event_type: &str,
        data: Payload,
    ) -> Result<u64, PluginError> {
        let Publication {
            event,
            targets,
            now,
        } = self.make_event(caller, event_type, data)?;
        let id = event.id;
        self.record_event(&event, targets.len(), now);
        for target in targets.iter() {
            match target {
                Target::Plugin(slot) => {
                    let delivery = Delivery {
                        event: event.clone(),
                        chain: caller.chain.clone(),
                        reply: None,
                    };
                    self.deliver(slot, delivery, &event);
                }
                Target::Host(sub) => deliver_host(sub, &event),
            }
        }
        Ok(id)
    }

    /// Queues one delivery; what the queue drops or refuses becomes a dead letter. Returns
    /// whether the delivery was queued.
    fn deliver(&self, slot: &Slot, delivery: Delivery, event: &Event) -> bool {
        match slot.deliver(delivery) {
            Ok(None) => true,
            Ok(Some(dropped)) => {
                self.dead_event(&slot.name, &dropped, "dropped from a full event queue");
                true
            }
            Err(()) => {
                self.dead_event(&slot.name, event, "plugin not taking events");
                false
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
        let Publication {
            event,
            targets,
            now,
        } = self.make_event(caller, event_type, data)?;
        let timeout = self.timeout(timeout);
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
                if self.deliver(slot, delivery, &event) {
                    None
                } else {
                    Some(Err(not_serving(&slot.name)))
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
                (name, r)
            })
            .collect())
    }

    /// Records a publication made at `now` (the host's microseconds).
    fn record_event(&self, event: &Event, subscribers: usize, now: u64) {
        if self.recorder.enabled() {
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

    fn dead_event(&self, plugin: &str, event: &Event, why: &str) {
        log::debug!(
            "event {} #{} not delivered to {plugin}: {why}",
            event.event_type,
            event.id
        );
        self.dead_letter(DeadLetter {
            timestamp_ms: now_ms(),
            kind: "event".to_owned(),
            id: event.id,
            name: event.event_type.to_string(),
            source: event.source.to_string(),
            target: plugin.to_owned(),
            reason: why.to_owned(),
        });
    }

    pub(super) fn dead_message(&self, caller: &Caller<'_>, plugin: &str, error: &PluginError) {
        self.dead_letter(DeadLetter {
            timestamp_ms: now_ms(),
            kind: "message".to_owned(),
            id: 0,
            name: String::new(),
            source: caller.name.to_owned(),
            target: plugin.to_owned(),
            reason: error.to_string(),
        });
    }
}

/// Queues an event for a host subscriber, dropping its oldest when full.
fn deliver_host(sub: &HostSubscriber, event: &Arc<Event>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_have_no_spaces_or_control_characters() {
        assert!(check_event_type("user:created").is_ok());
        assert!(check_event_type("").is_err());
        let e = check_event_type("bad type").expect_err("space");
        assert!(e.message().contains("\"bad type\""));
        assert!(check_event_type("x\u{1b}[2J").is_err());
    }
}
