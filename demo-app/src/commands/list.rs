//! `list`: every plugin file with its state and, for failures, the full reason.

use std::{fmt::Write as _, path::Path};

use loader::{LoadError, PluginState};
use serde::Serialize;

use crate::{error::error_chain, session::Session};

/// One plugin file in `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListRow {
    /// Plugin name, or the file name when the manifest could not be read.
    pub name: String,
    /// Plugin version, when known.
    pub version: Option<String>,
    /// Lifecycle state (`active`, `failed`, ...).
    pub state: String,
    /// The plugin file.
    pub file: String,
    /// Why it is not serving (or its last fault), in full.
    pub error: Option<String>,
    /// Where it runs: `in-process` or `process` (a child process of its own).
    pub isolation: String,
}

/// Every plugin file the host knows, failures included, sorted by name.
pub fn list(session: &Session) -> Vec<ListRow> {
    let mut rows: Vec<ListRow> = session
        .host
        .plugins()
        .into_iter()
        .map(|info| {
            // A failed file's error comes with its causes.
            let error = info.error;
            ListRow {
                name: info.name,
                version: info.version,
                state: info.state.as_str().to_owned(),
                file: info.file.display().to_string(),
                error,
                isolation: info.isolation.as_str().to_owned(),
            }
        })
        .collect();
    // `Host::plugins` leaves out a failed file whose plugin name is also active (a duplicate),
    // but the user asked about every file in the folder.
    for entry in &session.report.entries {
        let Some(error) = &entry.error else { continue };
        let file = entry.file.display().to_string();
        if matches!(**error, LoadError::AlreadyLoaded { .. }) || rows.iter().any(|r| r.file == file)
        {
            continue;
        }
        let name = entry
            .plugin
            .clone()
            .unwrap_or_else(|| file_name(&entry.file));
        let isolation = session
            .host
            .config()
            .isolation_of(&name)
            .as_str()
            .to_owned();
        rows.push(ListRow {
            name,
            version: entry.version.clone(),
            state: PluginState::Failed.as_str().to_owned(),
            file,
            error: Some(error_chain(error)),
            isolation,
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.file.cmp(&b.file)));
    rows
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The `list` table: one line per file, each failure's reason on the line below it, and a
/// summary naming the folder (the table shows file names only, to stay narrow).
pub fn render_list(rows: &[ListRow], plugins_dir: &Path) -> String {
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.version.clone().unwrap_or_else(|| "-".to_owned()),
                r.state.clone(),
                file_name(Path::new(&r.file)),
            ]
        })
        .collect();
    let header = ["NAME", "VERSION", "STATE", "FILE"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    push_row(&mut out, &header, &widths);
    for (row, cells) in rows.iter().zip(&cells) {
        push_row(&mut out, cells, &widths);
        if let Some(error) = &row.error {
            let _ = writeln!(out, "    error: {error}");
        }
    }
    let serving = rows
        .iter()
        .filter(|r| r.state == PluginState::Active.as_str())
        .count();
    let failed = rows
        .iter()
        .filter(|r| r.state == PluginState::Failed.as_str())
        .count();
    let other = rows.len() - serving - failed;
    let _ = write!(
        out,
        "{} plugin file{} in {}: {serving} active, {failed} failed",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        plugins_dir.display()
    );
    if other > 0 {
        let _ = write!(out, ", {other} other");
    }
    out.push('\n');
    out
}

fn push_row(out: &mut String, cells: &[String; 4], widths: &[usize; 4]) {
    let line = cells
        .iter()
        .zip(widths)
        .map(|(cell, width)| format!("{cell:<width$}"))
        .collect::<Vec<_>>()
        .join("  ");
    let _ = writeln!(out, "{}", line.trim_end());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn row(name: &str, state: &str, error: Option<&str>) -> ListRow {
        ListRow {
            name: name.to_owned(),
            version: error.is_none().then(|| "0.1.0".to_owned()),
            state: state.to_owned(),
            file: format!("/p/lib{name}.so"),
            error: error.map(str::to_owned),
            isolation: "in-process".to_owned(),
        }
    }

    #[test]
    fn table_has_aligned_columns_and_full_errors() {
        let rows = [
            row("greeter", "active", None),
            row(
                "broken",
                "failed",
                Some("/p/libbroken.so is not a plugin: symbol x not found"),
            ),
        ];
        let table = render_list(&rows, Path::new("/p"));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "NAME     VERSION  STATE   FILE");
        assert_eq!(lines[1], "greeter  0.1.0    active  libgreeter.so");
        assert_eq!(lines[2], "broken   -        failed  libbroken.so");
        assert_eq!(
            lines[3],
            "    error: /p/libbroken.so is not a plugin: symbol x not found"
        );
        assert_eq!(lines[4], "2 plugin files in /p: 1 active, 1 failed");
    }

    #[test]
    fn list_json_has_null_error() {
        let text = json::to_text(&[row("greeter", "active", None)], false).expect("json");
        assert_eq!(
            text,
            r#"[{"name":"greeter","version":"0.1.0","state":"active","file":"/p/libgreeter.so","error":null,"isolation":"in-process"}]"#
        );
    }
}
