//! `trace`: the host's flight recorder, as a causal tree or as JSON.

use std::collections::HashMap;

use loader::TraceRecord;

use crate::{error::AppError, json};

/// The records caused by work started after record id `before`: new records whose chain of
/// parents does not lead back to older work.
///
/// A one-shot `trace call ...` uses it to leave out the load (its lifecycle events and their
/// deliveries, some of which finish only after the command started): the loader has no public
/// "current trace position", so the largest id recorded before the command stands in for it.
pub fn since(records: Vec<TraceRecord>, before: u64) -> Vec<TraceRecord> {
    let parents: HashMap<u64, u64> = records.iter().map(|r| (r.id, r.parent)).collect();
    let is_new = |record: &TraceRecord| {
        if record.id <= before {
            return false;
        }
        let mut parent = record.parent;
        // Bounded walk: ids are unique, but a malformed chain must not loop forever.
        for _ in 0..=parents.len() {
            if parent == 0 {
                return true;
            }
            if parent <= before {
                return false;
            }
            match parents.get(&parent) {
                Some(&next) if next != parent => parent = next,
                _ => return true,
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
    loader::render_tree(records)
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
    use loader::RecordKind;

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
            outcome: "ok".into(),
        }
    }

    #[test]
    fn since_keeps_only_work_caused_after_the_mark() {
        let records = vec![
            record(3, 0, RecordKind::Event, "plugin:activated"),
            // A delivery of the load's event that ran late: new id, old parent.
            record(12, 3, RecordKind::Delivery, "plugin:activated"),
            // Work that the late delivery caused.
            record(14, 12, RecordKind::Command, "audit-log:note"),
            record(13, 0, RecordKind::Event, "greeter:greeted"),
            record(11, 0, RecordKind::Command, "greeter:greet"),
            record(15, 13, RecordKind::Delivery, "greeter:greeted"),
        ];
        let ids: Vec<u64> = since(records, 10).iter().map(|r| r.id).collect();
        assert_eq!(ids, [13, 11, 15]);
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
    fn empty_trace_says_so() {
        assert_eq!(render_trace(&[], true), "no trace records\n");
        assert!(render_trace(&[], false).contains("off"));
    }
}
