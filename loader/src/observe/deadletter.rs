//! Dead letters: events and messages that could not be delivered, kept in a bounded buffer the
//! application can read (and `demo-app dead-letters` shows).

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde::Serialize;

/// Something that could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// When it was given up, in ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// `event` or `message`.
    pub kind: String,
    /// The event id (0 for messages that never got queued; `null` in JSON).
    #[serde(serialize_with = "super::json::zero_as_null")]
    pub id: u64,
    /// The event type.
    pub name: String,
    /// Who sent it.
    pub source: String,
    /// The plugin it was for.
    pub target: String,
    /// Why it was not delivered (queue overflow, plugin gone...).
    pub reason: String,
}

/// The bounded buffer; the oldest letters go first.
pub(crate) struct DeadLetters {
    capacity: usize,
    letters: Mutex<VecDeque<DeadLetter>>,
    total: std::sync::atomic::AtomicU64,
}

impl DeadLetters {
    pub fn new(capacity: usize) -> Self {
        DeadLetters {
            capacity,
            letters: Mutex::new(VecDeque::new()),
            total: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn push(&self, letter: DeadLetter) {
        self.total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.capacity == 0 {
            return;
        }
        let mut letters = self.letters.lock();
        if letters.len() >= self.capacity {
            letters.pop_front();
        }
        letters.push_back(letter);
    }

    pub fn snapshot(&self) -> Vec<DeadLetter> {
        self.letters.lock().iter().cloned().collect()
    }

    /// How many are kept now.
    pub fn len(&self) -> usize {
        self.letters.lock().len()
    }

    pub fn total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }
}
