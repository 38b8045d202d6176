//! `dead-letters`: events and messages the host could not deliver.

use loader::{DeadLetter, Host};
use serde::Serialize;

use super::table::{self, Align};
use crate::clock;

/// What `dead-letters` shows: the letters the host kept and how many there were in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetters {
    /// Every undeliverable event or message since the host started.
    pub total: u64,
    /// The most recent ones (the host keeps `dead_letter_capacity`), oldest first.
    pub letters: Vec<DeadLetter>,
}

/// The host's dead letters now.
pub fn dead_letters(host: &Host) -> DeadLetters {
    let (letters, total) = host.dead_letters();
    DeadLetters { total, letters }
}

/// The dead letters as a table, with a summary line.
pub fn render_dead_letters(d: &DeadLetters) -> String {
    if d.letters.is_empty() && d.total == 0 {
        return "no dead letters\n".to_owned();
    }
    let cells: Vec<Vec<String>> = d
        .letters
        .iter()
        .map(|l| {
            vec![
                clock::utc(l.timestamp_ms),
                l.kind.clone(),
                l.id.to_string(),
                l.name.clone(),
                l.source.clone(),
                l.target.clone(),
                l.reason.clone(),
            ]
        })
        .collect();
    let mut out = table::render(
        &[
            "TIME (UTC)",
            "KIND",
            "ID",
            "NAME",
            "SOURCE",
            "TARGET",
            "REASON",
        ],
        &[Align::Left, Align::Left, Align::Right],
        &cells,
    );
    if crate::output::quiet() {
        return out;
    }
    out.push_str(&format!(
        "{} dead letter{} in all, {} kept\n",
        d.total,
        if d.total == 1 { "" } else { "s" },
        d.letters.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn letter() -> DeadLetter {
        DeadLetter {
            timestamp_ms: 1_700_000_000_000,
            kind: "event".to_owned(),
            id: 42,
            name: "data:changed".to_owned(),
            source: "host".to_owned(),
            target: "slow".to_owned(),
            reason: "queue full: oldest event dropped".to_owned(),
        }
    }

    #[test]
    fn none_is_one_line() {
        let empty = DeadLetters {
            total: 0,
            letters: Vec::new(),
        };
        assert_eq!(render_dead_letters(&empty), "no dead letters\n");
        assert_eq!(
            json::to_text(&empty, false).expect("json"),
            r#"{"total":0,"letters":[]}"#
        );
    }

    #[test]
    fn table_and_summary() {
        let text = render_dead_letters(&DeadLetters {
            total: 3,
            letters: vec![letter()],
        });
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("TIME (UTC)"), "{}", lines[0]);
        assert!(
            lines[1].starts_with("2023-11-14T22:13:20.000Z  event  42  data:changed  host"),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], "3 dead letters in all, 1 kept");
    }
}
