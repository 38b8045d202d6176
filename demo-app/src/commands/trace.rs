//! `trace`: the host's flight recorder, as a causal tree or as JSON.

use std::{borrow::Cow, collections::HashMap, sync::Arc};

use loader::{RecordKind, TraceOutcome, TraceRecord};

use crate::{error::AppError, json, safe};

/// The records caused by work started after record id `before`: new records whose chain of
/// parents does not lead back to older work.
///
/// A one-shot `trace call ...` uses it to leave out the load (its lifecycle events and their
/// deliveries, some of which finish only after the command started): the loader has no public
/// "current trace position", so the largest id recorded before the command stands in for it.
pub fn since(records: Vec<TraceRecord>, before: u64) -> Vec<TraceRecord> {
    let by_id: HashMap<u64, (u64, RecordKind)> =
        records.iter().map(|r| (r.id, (r.parent, r.kind))).collect();
    // Delivery ids come from per-thread blocks and are not ordered with the others: a delivery
    // is as new as the event it delivers. Every other id is ordered, so it is compared with the
    // mark, and so are the ids of everything that caused it.
    let is_new = |record: &TraceRecord| {
        let (mut id, mut parent, mut kind) = (record.id, record.parent, record.kind);
        // Bounded walk: a malformed chain must not loop forever.
        for _ in 0..=by_id.len() {
            if kind != RecordKind::Delivery && id <= before {
                return false;
            }
            if parent == 0 || parent == id {
                return true;
            }
            match by_id.get(&parent) {
                Some(&(next, next_kind)) => {
                    id = parent;
                    parent = next;
                    kind = next_kind;
                }
                // The cause is no longer recorded: judge by its id.
                None => return parent > before,
            }
        }
        true
    };
    records.into_iter().filter(|r| is_new(r)).collect()
}

/// The records as text: the causal tree, or a note when there is none.
pub fn render_trace(records: &[TraceRecord], recording: bool) -> String {
    if records.is_empty() {
        return if recording {
            "no trace records\n".to_owned()
        } else {
            "no trace records (the flight recorder is off)\n".to_owned()
        };
    }
    let shown: Vec<TraceRecord> = records.iter().map(terminal_safe).collect();
    loader::render_tree(&shown)
}

/// `record` with the strings plugins chose (command and event names, plugin names, error
/// messages) made terminal-safe, for the tree.
fn terminal_safe(record: &TraceRecord) -> TraceRecord {
    let shown = |s: &Arc<str>| match safe::text(s) {
        Cow::Borrowed(_) => s.clone(),
        Cow::Owned(escaped) => Arc::from(escaped),
    };
    TraceRecord {
        name: shown(&record.name),
        caller: shown(&record.caller),
        plugin: shown(&record.plugin),
        outcome: match &record.outcome {
            TraceOutcome::Failed { message } => TraceOutcome::Failed {
                message: shown(message),
            },
            other => other.clone(),
        },
        ..record.clone()
    }
}

/// The records as JSON lines: one object per record, each line ending in a newline.
///
/// # Errors
/// Only if serialization fails, which plain records rule out.
pub fn json_lines(records: &[TraceRecord]) -> Result<String, AppError> {
    let mut out = String::new();
    for record in records {
        out.push_str(&json::to_text(record, false)?);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, parent: u64, kind: RecordKind, name: &str) -> TraceRecord {
        TraceRecord {
            id,
            parent,
            kind,
            name: name.into(),
            caller: "host".into(),
            plugin: "greeter".into(),
            queued_us: 1,
            started_us: 2,
            finished_us: 5,
            outcome: loader::TraceOutcome::Ok,
        }
    }

    #[test]
    fn since_keeps_only_work_caused_after_the_mark() {
        let records = vec![
            record(3, 0, RecordKind::Event, "plugin:activated"),
            // A delivery of the load's event that ran late: its id says nothing, its parent does.
            record(12, 3, RecordKind::Delivery, "plugin:activated"),
            // A delivery of the new event whose id came from an older per-thread block.
            record(5, 13, RecordKind::Delivery, "greeter:greeted"),
            // Work that the late delivery caused.
            record(14, 12, RecordKind::Command, "audit-log:note"),
            record(13, 0, RecordKind::Event, "greeter:greeted"),
            record(11, 0, RecordKind::Command, "greeter:greet"),
            record(15, 13, RecordKind::Delivery, "greeter:greeted"),
        ];
        let ids: Vec<u64> = since(records, 10).iter().map(|r| r.id).collect();
        assert_eq!(ids, [5, 13, 11, 15]);
    }

    #[test]
    fn json_lines_are_one_record_each() {
        let text = json_lines(&[
            record(1, 0, RecordKind::Command, "greeter:greet"),
            record(2, 1, RecordKind::Event, "greeter:greeted"),
        ])
        .expect("json");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with(r#"{"id":1,"parent":0,"kind":"command","name":"greeter:greet""#),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn tree_escapes_what_plugins_named() {
        let mut bad = record(1, 0, RecordKind::Command, "evil:\u{1b}[2J");
        bad.outcome = TraceOutcome::Failed {
            message: "\r\nerror: forged".into(),
        };
        let tree = render_trace(&[bad], true);
        assert!(!tree.contains('\u{1b}') && !tree.contains('\r'), "{tree}");
        assert!(tree.contains(r"evil:\u{1b}[2J"), "{tree}");
        assert_eq!(tree.lines().count(), 1, "{tree}");
    }

    #[test]
    fn empty_trace_says_so() {
        assert_eq!(render_trace(&[], true), "no trace records\n");
        assert!(render_trace(&[], false).contains("off"));
    }
}
