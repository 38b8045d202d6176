//! The flight recorder: a bounded ring of the most recent units of work, each with its id, the
//! id of the work that caused it, timing, target plugin and outcome.
//!
//! Recording is built to stay cheap on the dispatch path: a record keeps short names inline (no
//! allocation, and no reference count that threads would bounce between CPUs), its outcome as a
//! tag (text is made only when a snapshot is taken), it goes to one of several rings chosen per
//! thread (an uncontended lock), and the caller supplies clock readings it already took. The
//! most frequent record, a subscriber's delivery that succeeded, is a compact [`Delivered`] in
//! a ring of its own: a snapshot fills in the event's type and source from the publication. It can
//! be switched off at run time ([`Host::set_recording`](crate::Host::set_recording)) and is off
//! when `recorder_capacity` is 0.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use crossbeam_utils::CachePadded;
use plugin_api::PluginError;

use parking_lot::Mutex;
use serde::Serialize;

/// What kind of work a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// An event was published.
    Event,
    /// A subscriber handled an event.
    Delivery,
    /// A command ran.
    Command,
    /// A direct message was handled.
    Message,
    /// An RPC call was handled.
    Rpc,
    /// One handler of a hook run.
    Hook,
    /// One middleware step (before or after a command).
    Middleware,
    /// A provider call.
    Provider,
}

/// One unit of work in the flight recorder.
#[derive(Debug, Clone, Serialize)]
pub struct TraceRecord {
    /// Id of this work (event ids are the events' own ids).
    pub id: u64,
    /// Id of the work during which this one was started (0: none, e.g. the host application).
    pub parent: u64,
    /// Kind of work.
    pub kind: RecordKind,
    /// Command, event type, hook, method or provider name. A delivery that succeeded takes
    /// its event's type from the publication's record: it is empty (`null` in JSON) if that
    /// record was already overwritten.
    #[serde(serialize_with = "super::json::empty_as_null")]
    pub name: Arc<str>,
    /// Who asked: a plugin name or `host`. For a delivery, the event's source, taken from the
    /// publication's record (empty if that record was already overwritten; `null` in JSON).
    #[serde(serialize_with = "super::json::empty_as_null")]
    pub caller: Arc<str>,
    /// The plugin that did the work (empty for a publication; `null` in JSON).
    #[serde(serialize_with = "super::json::empty_as_null")]
    pub plugin: Arc<str>,
    /// Microseconds since the host started, when the work was queued.
    pub queued_us: u64,
    /// When the plugin started it (0 if it never did; `null` in JSON).
    #[serde(serialize_with = "super::json::zero_as_null")]
    pub started_us: u64,
    /// When it finished (0 if it never did; `null` in JSON).
    #[serde(serialize_with = "super::json::zero_as_null")]
    pub finished_us: u64,
    /// `ok`, or the error message.
    pub outcome: TraceOutcome,
}

/// The ring buffer.
pub(crate) struct Recorder {
    epoch: Instant,
    capacity: usize,
    enabled: AtomicBool,
    /// Several rings, each written by the threads that picked it, so dispatcher threads
    /// recording at the same time rarely contend for one lock. Each holds up to `capacity`; a
    /// snapshot merges them and keeps the newest `capacity`.
    shards: Vec<CachePadded<Mutex<Shard>>>,
    /// Distinguishes recorders (hosts) in one process, for per-thread rings.
    instance: u64,
    /// The ring the next thread to record gets (round-robin, per recorder: the first
    /// [`SHARDS`] threads of a host each get a ring of their own).
    next_ring: AtomicUsize,
}

static RECORDERS: AtomicU64 = AtomicU64::new(1);

/// Rings per recorder. Threads pick one round-robin when they first record in it, so up to this
/// many busy threads of a host never share a lock; each ring holds up to the capacity (so one
/// busy thread alone still keeps the newest `capacity` records), and rings grow only as they
/// are used.
const SHARDS: usize = 8;

/// Recorders a thread remembers its ring in (most recent last); beyond that the oldest is
/// forgotten and picks a ring again when it records next.
const REMEMBERED: usize = 8;

thread_local! {
    /// (recorder instance, ring index) for the recorders this thread writes to.
    static RINGS: std::cell::RefCell<Vec<(u64, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The last of them this thread wrote to: nearly every thread writes to one recorder only,
    /// and finds its ring here without a search.
    static LAST_RING: std::cell::Cell<(u64, usize)> = const { std::cell::Cell::new((0, 0)) };
}

impl Recorder {
    /// A recorder keeping up to `capacity` records, whose times count microseconds from
    /// `epoch` (the host's clock's, so that one conversion of a clock reading serves both).
    pub fn new(capacity: usize, epoch: Instant) -> Self {
        Recorder {
            epoch,
            capacity,
            enabled: AtomicBool::new(capacity > 0),
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(Shard::default())))
                .collect(),
            instance: RECORDERS.fetch_add(1, Ordering::Relaxed),
            next_ring: AtomicUsize::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled
            .store(on && self.capacity > 0, Ordering::Relaxed);
    }

    /// Microseconds since the recorder started (0 when recording is off).
    pub fn now(&self) -> u64 {
        if self.enabled() {
            u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
        } else {
            0
        }
    }

    /// Microseconds from the recorder's start to `at` (a clock reading already taken).
    pub fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    pub fn push(&self, record: Entry) {
        if let Some(shard) = self.shard() {
            shard.lock().entries.push(self.capacity, record);
        }
    }

    /// Appends the delivery records `records` (emptying it) under one lock.
    pub fn push_deliveries(&self, records: &mut Vec<Delivered>) {
        match self.shard() {
            Some(shard) => shard.lock().deliveries.push_all(self.capacity, records),
            None => records.clear(),
        }
    }

    /// This thread's rings, while recording.
    fn shard(&self) -> Option<&Mutex<Shard>> {
        if !self.enabled() {
            return None;
        }
        self.shards.get(self.ring_index()).map(|ring| &**ring)
    }

    /// The ring this thread writes to in this recorder, picked when it first records here.
    fn ring_index(&self) -> usize {
        let me = self.instance;
        let (last, index) = LAST_RING.get();
        if last == me {
            return index;
        }
        let index = RINGS.with(|rings| {
            let mut rings = rings.borrow_mut();
            if let Some(&(_, index)) = rings.iter().find(|(r, _)| *r == me) {
                return index;
            }
            let index = self.next_ring.fetch_add(1, Ordering::Relaxed) % SHARDS;
            if rings.len() >= REMEMBERED {
                rings.remove(0);
            }
            rings.push((me, index));
            index
        });
        LAST_RING.set((me, index));
        index
    }

    /// The newest `capacity` records, oldest first.
    pub fn snapshot(&self) -> Vec<TraceRecord> {
        let mut all: Vec<TraceRecord> = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock();
            all.extend(shard.entries.iter().map(Entry::record));
            all.extend(shard.deliveries.iter().map(Delivered::record));
        }
        // A delivery leaves the event's type and source to the publication's record: copying
        // them would make every delivery's record larger (see [`Delivered`]).
        let events: std::collections::HashMap<u64, (Arc<str>, Arc<str>)> = all
            .iter()
            .filter(|r| r.kind == RecordKind::Event)
            .map(|r| (r.id, (r.name.clone(), r.caller.clone())))
            .collect();
        for r in all.iter_mut().filter(|r| r.kind == RecordKind::Delivery) {
            if let Some((name, source)) = events.get(&r.parent) {
                if r.name.is_empty() {
                    r.name = name.clone();
                }
                if r.caller.is_empty() {
                    r.caller = source.clone();
                }
            }
        }
        all.sort_by_key(|r| (r.queued_us, r.id));
        let excess = all.len().saturating_sub(self.capacity);
        all.drain(..excess);
        all
    }

    /// How many records are kept now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.entries.entries.len() + s.deliveries.entries.len()
            })
            .sum()
    }

    pub fn clear(&self) {
        for shard in &self.shards {
            let mut shard = shard.lock();
            shard.entries.clear();
            shard.deliveries.clear();
        }
    }
}

/// What the threads that picked one ring index write: their records, and apart from them
/// the compact records of their deliveries. Each holds up to the capacity.
#[derive(Default)]
struct Shard {
    entries: Ring<Entry>,
    deliveries: Ring<Delivered>,
}

/// A bounded ring of records: once full, each new record replaces the oldest in place.
struct Ring<T> {
    entries: Vec<T>,
    /// The oldest entry once the ring is full (0 until then).
    next: usize,
}

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Ring {
            entries: Vec::new(),
            next: 0,
        }
    }
}

impl<T> Ring<T> {
    fn push(&mut self, capacity: usize, entry: T) {
        if self.entries.len() < capacity {
            self.entries.push(entry);
        } else if let Some(oldest) = self.entries.get_mut(self.next) {
            *oldest = entry;
            self.next += 1;
            if self.next == self.entries.len() {
                self.next = 0;
            }
        }
    }

    /// Appends `records` in order, as many [`Ring::push`]es would, emptying it. Once the ring
    /// is full, each slice of records is swapped with the oldest entries in one go, and what
    /// they replaced is dropped with `records`' contents: no entry is dropped and moved one by
    /// one.
    fn push_all(&mut self, capacity: usize, records: &mut Vec<T>) {
        let grow = capacity
            .saturating_sub(self.entries.len())
            .min(records.len());
        self.entries.extend(records.drain(..grow));
        let mut rest = &mut records[..];
        let len = self.entries.len();
        while !rest.is_empty() && len > 0 {
            let n = (len - self.next).min(rest.len());
            let (now, later) = rest.split_at_mut(n);
            self.entries[self.next..self.next + n].swap_with_slice(now);
            self.next = (self.next + n) % len;
            rest = later;
        }
        records.clear();
    }

    /// Oldest first.
    fn iter(&self) -> impl Iterator<Item = &T> {
        let (newer, older) = self.entries.split_at(self.next.min(self.entries.len()));
        older.iter().chain(newer)
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.next = 0;
    }
}

/// Names up to this many bytes are kept inside a record.
const INLINE: usize = 22;

/// A name as a record keeps it: inline when short (the common case: plugin names, event types,
/// commands), shared otherwise.
#[derive(Clone)]
pub(crate) enum Label {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl Label {
    pub fn new(text: &str) -> Label {
        let len = text.len();
        if len <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..len].copy_from_slice(text.as_bytes());
            Label::Inline {
                len: len as u8,
                bytes,
            }
        } else {
            Label::Shared(Arc::from(text))
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Copied whole from a `str`, so always UTF-8.
            Label::Inline { len, bytes } => {
                std::str::from_utf8(bytes.get(..usize::from(*len)).unwrap_or_default())
                    .unwrap_or_default()
            }
            Label::Shared(text) => text,
        }
    }

    pub(crate) fn text(&self) -> Arc<str> {
        match self {
            Label::Inline { .. } => Arc::from(self.as_str()),
            Label::Shared(text) => text.clone(),
        }
    }
}

impl std::fmt::Debug for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Label::new(&text))
    }
}

/// How a unit of work ended, as a [`TraceRecord`] tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TraceOutcome {
    /// The work succeeded.
    Ok,
    /// An event was published to this many subscribers.
    Published {
        /// How many subscribers it was queued for.
        subscribers: usize,
    },
    /// The work failed.
    Failed {
        /// The error message.
        message: Arc<str>,
    },
    /// The call was cancelled (its caller stopped waiting, or its plugin was being
    /// deactivated) and its handler returned this long after it started.
    Cancelled {
        /// How long the handler ran, in milliseconds.
        after_ms: u64,
    },
}

impl TraceOutcome {
    /// Whether the work succeeded (a publication always does).
    pub fn is_ok(&self) -> bool {
        !matches!(
            self,
            TraceOutcome::Failed { .. } | TraceOutcome::Cancelled { .. }
        )
    }
}

impl std::fmt::Display for TraceOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraceOutcome::Ok => f.write_str("ok"),
            TraceOutcome::Published { subscribers: 1 } => f.write_str("ok (1 subscriber)"),
            TraceOutcome::Published { subscribers } => write!(f, "ok ({subscribers} subscribers)"),
            TraceOutcome::Failed { message } => f.write_str(message),
            TraceOutcome::Cancelled { after_ms } => write!(f, "cancelled after {after_ms} ms"),
        }
    }
}

/// How a unit of work ended, as a record keeps it (small: the error text behind one pointer).
pub(crate) enum Outcome {
    /// `ok`.
    Ok,
    /// A publication: `ok (<n> subscribers)`.
    Published(usize),
    /// The error message (behind one pointer, to keep records small).
    Failed(Arc<String>),
    /// Cancelled; the handler returned after this many milliseconds.
    Cancelled(u64),
}

impl Outcome {
    pub fn of<T>(result: &Result<T, PluginError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Failed(Arc::new(e.message().to_owned())),
        }
    }

    fn public(&self) -> TraceOutcome {
        match self {
            Outcome::Ok => TraceOutcome::Ok,
            Outcome::Published(n) => TraceOutcome::Published { subscribers: *n },
            Outcome::Failed(message) => TraceOutcome::Failed {
                message: Arc::from(message.as_str()),
            },
            Outcome::Cancelled(after_ms) => TraceOutcome::Cancelled {
                after_ms: *after_ms,
            },
        }
    }
}

/// One unit of work as the rings keep it (see [`TraceRecord`] for the fields): 128 bytes, two
/// cache lines.
pub(crate) struct Entry {
    pub id: u64,
    pub parent: u64,
    pub kind: RecordKind,
    pub name: Label,
    pub caller: Label,
    pub plugin: Label,
    /// How long the work waited in a queue before it started, in µs.
    pub waited_us: u32,
    pub started_us: u64,
    pub finished_us: u64,
    pub outcome: Outcome,
}

impl Entry {
    fn record(&self) -> TraceRecord {
        TraceRecord {
            id: self.id,
            parent: self.parent,
            kind: self.kind,
            name: self.name.text(),
            caller: self.caller.text(),
            plugin: self.plugin.text(),
            queued_us: self.started_us.saturating_sub(u64::from(self.waited_us)),
            started_us: self.started_us,
            finished_us: self.finished_us,
            outcome: self.outcome.public(),
        }
    }
}

/// A delivery that succeeded, as the rings keep it: 56 bytes instead of an [`Entry`]'s 128,
/// since a fan-out writes one per subscriber per event. It leaves out what the publication's
/// record holds (the event's type and source, filled in when a snapshot is taken) and what
/// is the same for every such delivery (its kind, its outcome `ok`, no wait: a delivery's
/// queue time is its publication's). A delivery that failed or was cancelled is an
/// [`Entry`], which keeps its own copy of the type.
pub(crate) struct Delivered {
    /// The delivery's own id (the parent of the work its handler did).
    pub id: u64,
    /// The event's id.
    pub event: u64,
    pub started_us: u64,
    /// How long the handler ran, in µs.
    pub took_us: u32,
    /// The subscriber.
    pub plugin: Label,
}

impl Delivered {
    fn record(&self) -> TraceRecord {
        let empty: Arc<str> = Arc::from("");
        TraceRecord {
            id: self.id,
            parent: self.event,
            kind: RecordKind::Delivery,
            name: empty.clone(),
            caller: empty,
            plugin: self.plugin.text(),
            queued_us: self.started_us,
            started_us: self.started_us,
            finished_us: self.started_us.saturating_add(u64::from(self.took_us)),
            outcome: TraceOutcome::Ok,
        }
    }
}

/// Renders records as an indented causal tree (children under the work that caused them),
/// oldest first.
pub fn render_tree(records: &[TraceRecord]) -> String {
    use std::collections::{BTreeMap, HashSet};
    let ids: HashSet<u64> = records.iter().map(|r| r.id).collect();
    let mut children: BTreeMap<u64, Vec<&TraceRecord>> = BTreeMap::new();
    let mut roots = Vec::new();
    for r in records {
        if r.parent != 0 && ids.contains(&r.parent) && r.parent != r.id {
            children.entry(r.parent).or_default().push(r);
        } else {
            roots.push(r);
        }
    }
    let mut out = String::new();
    let mut stack: Vec<(&TraceRecord, usize)> = roots.into_iter().rev().map(|r| (r, 0)).collect();
    let mut seen = HashSet::new();
    while let Some((r, depth)) = stack.pop() {
        if !seen.insert((r.id, r.kind as u8, &*r.plugin)) {
            continue;
        }
        let took = if r.finished_us >= r.started_us && r.started_us > 0 {
            format!("{} µs", r.finished_us - r.started_us)
        } else {
            "-".to_owned()
        };
        let target = if r.plugin.is_empty() {
            String::new()
        } else {
            format!(" -> {}", r.plugin)
        };
        out.push_str(&format!(
            "{:indent$}#{} {:?} {} ({}{}) {} [{}]\n",
            "",
            r.id,
            r.kind,
            r.name,
            r.caller,
            target,
            took,
            r.outcome,
            indent = depth * 2
        ));
        if let Some(kids) = children.get(&r.id) {
            for k in kids.iter().rev() {
                stack.push((k, depth + 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> Entry {
        Entry {
            id,
            parent: 0,
            kind: RecordKind::Event,
            name: Label::new("e"),
            caller: Label::new("host"),
            plugin: Label::new(""),
            waited_us: 0,
            started_us: id,
            finished_us: id,
            outcome: Outcome::Published(2),
        }
    }

    #[test]
    fn a_record_fits_two_cache_lines() {
        assert!(
            std::mem::size_of::<Entry>() <= 128,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn a_delivery_record_fits_one_cache_line() {
        assert!(
            std::mem::size_of::<Delivered>() <= 64,
            "{}",
            std::mem::size_of::<Delivered>()
        );
    }

    #[test]
    fn a_delivery_takes_its_events_type_and_source_from_the_publication() {
        let recorder = Recorder::new(8, Instant::now());
        let mut publication = entry(5);
        publication.name = Label::new("greeting:said");
        publication.caller = Label::new("greeter");
        recorder.push(publication);
        let delivery = |id, event| Delivered {
            id,
            event,
            started_us: 7,
            took_us: 3,
            plugin: Label::new("listener"),
        };
        // The second delivery's publication is not in the recorder (overwritten, say).
        recorder.push_deliveries(&mut vec![delivery(6, 5), delivery(8, 4)]);
        let records = recorder.snapshot();
        assert_eq!(records.len(), 3);
        let of = |id| records.iter().find(|r| r.id == id).expect("a record");
        let known = of(6);
        assert_eq!(known.kind, RecordKind::Delivery);
        assert_eq!(
            (&*known.name, &*known.caller, &*known.plugin),
            ("greeting:said", "greeter", "listener")
        );
        assert_eq!(
            (known.parent, known.started_us, known.finished_us),
            (5, 7, 10)
        );
        assert_eq!(known.outcome, TraceOutcome::Ok);
        let orphan = of(8);
        assert_eq!((&*orphan.name, &*orphan.caller), ("", ""));
        let json = serde_json::to_value(orphan).expect("json");
        assert!(json["name"].is_null() && json["caller"].is_null(), "{json}");
        assert_eq!(recorder.len(), 3);
        recorder.clear();
        assert_eq!(recorder.len(), 0);
    }

    #[test]
    fn a_full_ring_replaces_its_oldest_records_in_order() {
        let mut ring = Ring::default();
        for id in 0..10 {
            ring.push(4, entry(id));
        }
        let ids: Vec<u64> = ring.iter().map(|e| e.id).collect();
        assert_eq!(ids, [6, 7, 8, 9]);
        ring.clear();
        assert_eq!(ring.iter().count(), 0);
        ring.push(4, entry(1));
        assert_eq!(ring.iter().map(|e| e.id).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn records_pushed_in_batches_land_as_if_pushed_one_by_one() {
        // Batches that fill the ring, wrap it, and more than go round it in one go.
        for capacity in [1, 4, 7] {
            for batch in [1, 3, 4, 10] {
                let (mut one, mut all) = (Ring::default(), Ring::default());
                let mut next = 0;
                for _ in 0..5 {
                    let mut records: Vec<Entry> = (next..next + batch).map(entry).collect();
                    for id in next..next + batch {
                        one.push(capacity, entry(id));
                    }
                    next += batch;
                    all.push_all(capacity, &mut records);
                    assert!(records.is_empty());
                    let ids = |r: &Ring<Entry>| r.iter().map(|e| e.id).collect::<Vec<_>>();
                    assert_eq!(ids(&all), ids(&one), "capacity {capacity}, batch {batch}");
                }
            }
        }
    }

    #[test]
    fn labels_keep_short_and_long_names() {
        for text in [
            "",
            "host",
            "greeter:greet",
            &"x".repeat(INLINE),
            &"é".repeat(40),
        ] {
            let label = Label::new(text);
            assert_eq!(label.as_str(), text);
            assert_eq!(&*label.text(), text);
        }
        assert!(matches!(
            Label::new(&"y".repeat(INLINE)),
            Label::Inline { .. }
        ));
        assert!(matches!(
            Label::new(&"y".repeat(INLINE + 1)),
            Label::Shared(_)
        ));
    }

    #[test]
    fn snapshots_spell_out_outcomes() {
        let recorder = Recorder::new(8, Instant::now());
        recorder.push(entry(1));
        let mut failed = entry(2);
        failed.outcome = Outcome::of::<()>(&Err(PluginError::invalid("bad input")));
        recorder.push(failed);
        let records = recorder.snapshot();
        let outcomes: Vec<String> = records.iter().map(|r| r.outcome.to_string()).collect();
        assert_eq!(outcomes, ["ok (2 subscribers)", "bad input"]);
        assert_eq!(
            records[0].outcome,
            TraceOutcome::Published { subscribers: 2 }
        );
        assert_eq!(&*records[0].caller, "host");
    }
}
