//! `stats`: each plugin's counters, queue depths and latencies (`PluginInfo::metrics`).

use loader::{Host, PluginMetrics};
use serde::Serialize;

use super::table::{self, Align};

/// One plugin in `stats`; in JSON the metrics fields sit beside `plugin` and `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsRow {
    /// Plugin name.
    pub plugin: String,
    /// Lifecycle state.
    pub state: String,
    /// Where it runs: `in-process` or `process` (a child process of its own).
    pub isolation: String,
    /// Its counters.
    #[serde(flatten)]
    pub metrics: PluginMetrics,
}

/// Every plugin the host knows, sorted by name, with a snapshot of its metrics. Files that never
/// became a plugin (no manifest read) have no metrics and are left out: `list` shows them.
pub fn stats(host: &Host) -> Vec<StatsRow> {
    let mut rows: Vec<StatsRow> = host
        .plugins()
        .into_iter()
        .filter_map(|info| {
            Some(StatsRow {
                plugin: super::list::plugin_name(info.name, info.file.as_deref())?,
                state: info.state.as_str().to_owned(),
                isolation: info.isolation.as_str().to_owned(),
                metrics: info.metrics,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.plugin.cmp(&b.plugin));
    rows
}

/// The `stats` table. `QUEUED` is requests/events waiting now; latencies are the upper bounds
/// of power-of-two buckets, `-` before the first sample.
pub fn render_stats(rows: &[StatsRow]) -> String {
    if rows.is_empty() {
        return "no plugins\n".to_owned();
    }
    let header = [
        "PLUGIN", "STATE", "EVENTS", "CALLS", "ERRORS", "PANICS", "TIMEOUTS", "DROPPED", "QUEUED",
        "P50 µs", "P99 µs",
    ];
    let mut align = vec![Align::Left, Align::Left];
    align.extend([Align::Right; 9]);
    let latency = |us: u64| {
        if us == 0 {
            "-".to_owned()
        } else {
            us.to_string()
        }
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let m = &r.metrics;
            vec![
                r.plugin.clone(),
                r.state.clone(),
                m.events_handled.to_string(),
                m.calls_served.to_string(),
                m.errors.to_string(),
                m.panics.to_string(),
                m.timeouts.to_string(),
                m.events_dropped.to_string(),
                format!("{}/{}", m.queued_requests, m.queued_events),
                latency(m.latency_p50_us),
                latency(m.latency_p99_us),
            ]
        })
        .collect();
    table::render(&header, &align, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn row() -> StatsRow {
        StatsRow {
            plugin: "greeter".to_owned(),
            state: "active".to_owned(),
            isolation: "process".to_owned(),
            metrics: PluginMetrics {
                events_handled: 3,
                calls_served: 2,
                errors: 1,
                queued_events: 4,
                latency_p50_us: 16,
                latency_p99_us: 128,
                ..PluginMetrics::default()
            },
        }
    }

    #[test]
    fn json_flattens_the_metrics() {
        let text = json::to_text(&[row()], false).expect("json");
        assert!(
            text.starts_with(
                r#"[{"plugin":"greeter","state":"active","isolation":"process","events_handled":3,"#
            ),
            "{text}"
        );
        assert!(text.contains(r#""queued_events":4"#), "{text}");
        assert!(text.contains(r#""latency_p99_us":128}]"#), "{text}");
        // No sample yet: unknown, not 0.
        let mut idle = row();
        idle.metrics.latency_p50_us = 0;
        idle.metrics.latency_p99_us = 0;
        let text = json::to_text(&idle, false).expect("json");
        assert!(
            text.ends_with(r#""latency_p50_us":null,"latency_p99_us":null}"#),
            "{text}"
        );
    }

    #[test]
    fn table_has_one_line_per_plugin() {
        let text = render_stats(&[row()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("PLUGIN   STATE   EVENTS  CALLS"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("greeter  active       3      2"),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with("0/4      16     128"), "{}", lines[1]);
    }
}
