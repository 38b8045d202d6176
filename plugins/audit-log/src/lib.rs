//! Example plugin: an audit trail of recent events and commands.
//!
//! It subscribes to every event (`*`) and keeps the last [`CAPACITY`] of them; as middleware it
//! times every command and keeps the last [`CAPACITY`] outcomes. It never changes a command's
//! arguments or result.
//!
//! | command | arguments | answer |
//! |---|---|---|
//! | `audit-log:recent` | `{"limit": 20}` (optional, at most 1000) | `{"events": [{"type", "source", "timestamp", "id", "data"}, ...]}` |
//! | `audit-log:commands` | `{"limit": 20}` (optional, at most 1000) | `{"commands": [{"command", "caller", "timestamp", "duration_us", "ok", "error"}, ...]}` |
//!
//! Both answers list the newest first.
//!
//! ```
//! use audit_log::Bounded;
//! let mut log = Bounded::new(2);
//! for n in 1..=3 {
//!     log.push(n);
//! }
//! assert_eq!(log.newest(10).copied().collect::<Vec<_>>(), [3, 2]);
//! ```
#![forbid(unsafe_code)]

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use plugin_api::{prelude::*, Codec};
use serde::{Deserialize, Serialize};

/// How many events, and how many command records, the plugin keeps.
pub const CAPACITY: usize = 1000;

/// How many entries `recent` and `commands` return when no limit is given.
pub const DEFAULT_LIMIT: u64 = 20;

/// At most this many commands are timed at once; beyond it the oldest start is forgotten, so
/// starts whose end never comes (a middleware further out answered instead) cannot pile up.
const MAX_PENDING: usize = 1000;

/// A log that keeps its most recent `capacity` entries.
#[derive(Debug, Clone)]
pub struct Bounded<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Bounded<T> {
    /// An empty log keeping at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Bounded {
            items: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Appends `item`, forgetting the oldest entry when the log is full.
    pub fn push(&mut self, item: T) {
        if self.capacity == 0 {
            return;
        }
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// The newest `limit` entries, newest first.
    pub fn newest(&self, limit: usize) -> impl Iterator<Item = &T> {
        self.items.iter().rev().take(limit)
    }

    /// How many entries the log holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the log holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Start times of commands in flight, keyed by (command, caller).
///
/// The same command from the same caller can be in flight more than once (concurrent callers
/// from the host); their starts are matched first in, first out.
#[derive(Debug, Default)]
pub struct Timings {
    starts: HashMap<(String, String), VecDeque<Instant>>,
    pending: usize,
}

impl Timings {
    /// Records that `command` called by `caller` started at `at`.
    pub fn start(&mut self, command: &str, caller: &str, at: Instant) {
        if self.pending >= MAX_PENDING {
            self.forget_oldest();
        }
        self.starts
            .entry((command.to_owned(), caller.to_owned()))
            .or_default()
            .push_back(at);
        self.pending += 1;
    }

    /// How long `command` called by `caller` ran, measured to `at`; `None` when its start was
    /// not seen.
    pub fn finish(&mut self, command: &str, caller: &str, at: Instant) -> Option<Duration> {
        let key = (command.to_owned(), caller.to_owned());
        let queue = self.starts.get_mut(&key)?;
        let started = queue.pop_front()?;
        if queue.is_empty() {
            self.starts.remove(&key);
        }
        self.pending -= 1;
        Some(at.saturating_duration_since(started))
    }

    /// How many starts wait for their end.
    pub fn pending(&self) -> usize {
        self.pending
    }

    fn forget_oldest(&mut self) {
        let oldest = self
            .starts
            .iter()
            .filter_map(|(key, queue)| queue.front().map(|at| (at, key)))
            .min_by_key(|(at, _)| **at)
            .map(|(_, key)| key.clone());
        if let Some(key) = oldest {
            if let Some(queue) = self.starts.get_mut(&key) {
                queue.pop_front();
                self.pending -= 1;
                if queue.is_empty() {
                    self.starts.remove(&key);
                }
            }
        }
    }
}

/// One event as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Who emitted it.
    pub source: String,
    /// When the host accepted it, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The event id.
    pub id: u64,
    /// The data as JSON text when it was JSON, else a placeholder such as `<12 bytes bincode>`.
    pub data: String,
}

impl EventRecord {
    /// The record of `event`.
    pub fn of(event: &Event) -> Self {
        EventRecord {
            event_type: event.event_type.to_string(),
            source: event.source.to_string(),
            timestamp: event.timestamp_ms,
            id: event.id,
            data: describe_data(&event.data),
        }
    }
}

/// One command run as the middleware saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// The full command name, `<plugin>:<command>`.
    pub command: String,
    /// Who called it.
    pub caller: String,
    /// When it finished, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// How long it took in microseconds, as seen from this middleware; `None` when its start was
    /// not seen (the plugin was reloaded while the command ran).
    pub duration_us: Option<u64>,
    /// Whether it succeeded.
    pub ok: bool,
    /// Its error message when it failed.
    pub error: Option<String>,
}

/// Arguments of `recent` and `commands`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limit {
    /// How many entries to return: [`DEFAULT_LIMIT`] when absent, at most [`CAPACITY`].
    #[serde(default)]
    pub limit: Option<u64>,
}

impl Limit {
    /// The number of entries to return.
    pub fn resolve(self) -> usize {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        usize::try_from(limit).map_or(CAPACITY, |n| n.min(CAPACITY))
    }
}

/// The answer of `recent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentEvents {
    /// Newest first.
    pub events: Vec<EventRecord>,
}

/// The answer of `commands`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentCommands {
    /// Newest first.
    pub commands: Vec<CommandRecord>,
}

/// The data of a payload as shown in the audit log: JSON as text, anything else by size.
pub fn describe_data(data: &Payload) -> String {
    match data.codec {
        Codec::Json | Codec::Empty => data
            .to_json_string()
            .unwrap_or_else(|_| format!("<{} bytes invalid json>", data.len())),
        Codec::Bincode => format!("<{} bytes bincode>", data.len()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Decodes `args`, or gives the default when the caller sent nothing.
fn decode_or_default<T: serde::de::DeserializeOwned + Default>(args: &Payload) -> PluginResult<T> {
    if args.is_empty() {
        Ok(T::default())
    } else {
        args.decode()
    }
}

/// The audit-log plugin.
#[derive(Debug)]
pub struct AuditLog {
    events: Bounded<EventRecord>,
    commands: Bounded<CommandRecord>,
    timings: Timings,
}

impl Default for AuditLog {
    fn default() -> Self {
        AuditLog {
            events: Bounded::new(CAPACITY),
            commands: Bounded::new(CAPACITY),
            timings: Timings::default(),
        }
    }
}

/// Raw handlers: no arguments at all, in either codec, mean the default limit.
impl AuditLog {
    fn recent(&mut self, _: &Context, args: &Payload) -> PluginResult<Payload> {
        let limit = decode_or_default::<Limit>(args)?.resolve();
        args.reply_with(&RecentEvents {
            events: self.events.newest(limit).cloned().collect(),
        })
    }

    fn recent_commands(&mut self, _: &Context, args: &Payload) -> PluginResult<Payload> {
        let limit = decode_or_default::<Limit>(args)?.resolve();
        args.reply_with(&RecentCommands {
            commands: self.commands.newest(limit).cloned().collect(),
        })
    }
}

impl Plugin for AuditLog {
    fn manifest() -> Manifest {
        Manifest::new("audit-log").subscribes("*").middleware(0)
    }

    fn register(api: &mut Registrar<Self>) {
        api.command_raw(
            "recent",
            r#"the newest events, {"limit": n} (default 20)"#,
            Self::recent,
        )
        .command_raw(
            "commands",
            r#"the newest command runs, {"limit": n} (default 20)"#,
            Self::recent_commands,
        );
    }

    fn on_event(&mut self, _ctx: &Context, event: &Event) -> PluginResult<Option<Payload>> {
        self.events.push(EventRecord::of(event));
        Ok(None)
    }

    fn before_command(
        &mut self,
        _ctx: &Context,
        request: &CommandRequest,
    ) -> PluginResult<MiddlewareAction> {
        self.timings
            .start(&request.command, &request.caller, Instant::now());
        Ok(MiddlewareAction::Continue(request.clone()))
    }

    fn after_command(
        &mut self,
        _ctx: &Context,
        request: &CommandRequest,
        result: PluginResult<Payload>,
    ) -> PluginResult<Payload> {
        let duration = self
            .timings
            .finish(&request.command, &request.caller, Instant::now());
        self.commands.push(CommandRecord {
            command: request.command.to_string(),
            caller: request.caller.to_string(),
            timestamp: now_ms(),
            duration_us: duration.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            ok: result.is_ok(),
            error: result.as_ref().err().map(|e| e.message().to_owned()),
        });
        result
    }
}

export_plugin!(AuditLog);

#[cfg(test)]
mod tests {
    use plugin_api::RString;

    use super::*;

    #[test]
    fn bounded_keeps_the_newest() {
        let mut log = Bounded::new(3);
        assert!(log.is_empty());
        for n in 0..10 {
            log.push(n);
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.newest(2).copied().collect::<Vec<_>>(), [9, 8]);
        assert_eq!(log.newest(100).copied().collect::<Vec<_>>(), [9, 8, 7]);
    }

    #[test]
    fn bounded_with_no_capacity_keeps_nothing() {
        let mut log = Bounded::new(0);
        log.push(1);
        assert!(log.is_empty());
    }

    #[test]
    fn limit_defaults_and_caps() -> PluginResult<()> {
        assert_eq!(Limit::default().resolve(), 20);
        assert_eq!(Limit { limit: Some(5) }.resolve(), 5);
        assert_eq!(
            Limit {
                limit: Some(1_000_000)
            }
            .resolve(),
            CAPACITY
        );
        let empty_json: Limit = Payload::from_json_str("{}")?.decode()?;
        assert_eq!(empty_json.resolve(), 20);
        assert_eq!(decode_or_default::<Limit>(&Payload::empty())?.resolve(), 20);
        Ok(())
    }

    #[test]
    fn event_records_show_json_and_size_bincode() -> PluginResult<()> {
        let mut event = Event {
            id: 7,
            parent: 0,
            event_type: RString::from("document:saved"),
            source: RString::from("notes"),
            timestamp_ms: 1234,
            data: Payload::from_json_str(r#"{"id":1}"#)?,
        };
        let record = EventRecord::of(&event);
        assert_eq!(record.data, r#"{"id":1}"#);
        assert_eq!(record.event_type, "document:saved");
        event.data = Payload::encode(&(1u8, 2u8, 3u8))?;
        assert_eq!(EventRecord::of(&event).data, "<3 bytes bincode>");
        assert_eq!(describe_data(&Payload::empty()), "null");
        Ok(())
    }

    #[test]
    fn event_type_is_serialized_as_type() -> PluginResult<()> {
        let record = EventRecord {
            event_type: "a:b".into(),
            source: "host".into(),
            timestamp: 1,
            id: 2,
            data: "null".into(),
        };
        let json = Payload::json(&record)?.to_json_string()?;
        assert!(json.starts_with(r#"{"type":"a:b","#), "{json}");
        Ok(())
    }

    #[test]
    fn timings_match_starts_first_in_first_out() {
        let mut timings = Timings::default();
        let t0 = Instant::now();
        timings.start("greeter:greet", "host", t0);
        timings.start("greeter:greet", "host", t0 + Duration::from_millis(5));
        assert_eq!(timings.pending(), 2);
        let end = t0 + Duration::from_millis(10);
        assert_eq!(
            timings.finish("greeter:greet", "host", end),
            Some(Duration::from_millis(10))
        );
        assert_eq!(
            timings.finish("greeter:greet", "host", end),
            Some(Duration::from_millis(5))
        );
        assert_eq!(timings.finish("greeter:greet", "host", end), None);
        assert_eq!(timings.finish("other:cmd", "host", end), None);
        assert_eq!(timings.pending(), 0);
    }

    #[test]
    fn timings_forget_the_oldest_when_full() {
        let mut timings = Timings::default();
        let t0 = Instant::now();
        for i in 0..=MAX_PENDING {
            let at = t0 + Duration::from_micros(u64::try_from(i).unwrap_or(u64::MAX));
            timings.start(&format!("p:c{i}"), "host", at);
        }
        assert_eq!(timings.pending(), MAX_PENDING);
        assert_eq!(timings.finish("p:c0", "host", t0), None);
        assert!(timings.finish("p:c1", "host", t0).is_some());
    }

    #[test]
    fn manifest_declares_middleware_and_wildcard_subscription() {
        let caps = plugin_api::manifest_of::<AuditLog>().declared_capabilities();
        assert!(caps.contains(&"subscribe:*".to_owned()));
        assert!(caps.contains(&"middleware".to_owned()));
    }
}
