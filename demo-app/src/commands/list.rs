//! `list`: every plugin file with its state and, for failures, the full reason.

use std::{fmt::Write as _, path::Path};

use loader::{LoadError, PluginState};
use serde::Serialize;

use crate::{error::error_chain, safe, session::Session};

/// The state `list` shows for a library without abi_stable's root symbol: not a failure (a
/// dependency DLL beside the plugins on Windows, say), and never opened by the loader.
pub const NOT_A_PLUGIN: &str = "not a plugin";

/// One plugin file in `list`: `{"plugin", "version", "state", "file", "error", "isolation"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListRow {
    /// Plugin name; `None` (`null`) when the file's manifest could not be read.
    pub plugin: Option<String>,
    /// Plugin version, when known.
    pub version: Option<String>,
    /// Lifecycle state (`active`, `failed`, ...), or [`NOT_A_PLUGIN`].
    pub state: String,
    /// The plugin file; `None` (`null`) for a plugin compiled into the host.
    pub file: Option<String>,
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
            let state = match info.load_error.as_deref() {
                Some(e) => state_of(info.state, e),
                None => info.state.as_str(),
            };
            ListRow {
                plugin: plugin_name(info.name, info.file.as_deref()),
                version: info.version,
                state: state.to_owned(),
                file: info.file.map(|f| f.display().to_string()),
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
        if matches!(**error, LoadError::AlreadyLoaded { .. })
            || rows.iter().any(|r| r.file.as_ref() == Some(&file))
        {
            continue;
        }
        let isolation = session
            .host
            .config()
            .isolation_of(entry.plugin.as_deref().unwrap_or_default())
            .as_str()
            .to_owned();
        rows.push(ListRow {
            plugin: entry.plugin.clone(),
            version: entry.version.clone(),
            state: state_of(PluginState::Failed, error).to_owned(),
            file: Some(file),
            error: Some(error_chain(error)),
            isolation,
        });
    }
    for row in &mut rows {
        if let Some(error) = row.error.as_mut().filter(|_| {
            row.file
                .as_deref()
                .is_some_and(|f| is_symlink(Path::new(f)))
        }) {
            error.push_str(SYMLINK_HINT);
        }
    }
    rows.sort_by(|a, b| {
        a.shown_name()
            .cmp(&b.shown_name())
            .then_with(|| a.file.cmp(&b.file))
    });
    rows
}

/// The plugin name in `name`, which the host fills with the file's name when it never read
/// the manifest. The two cannot be mistaken: a plugin name has no `.`, a plugin file's name
/// always has one before its extension. A compiled-in plugin (no file) always has its name.
pub fn plugin_name(name: String, file: Option<&Path>) -> Option<String> {
    file.is_none_or(|file| name != file_name(file))
        .then_some(name)
}

impl ListRow {
    /// What the table's NAME column shows: the plugin name, else the file name.
    pub fn shown_name(&self) -> String {
        self.plugin.clone().unwrap_or_else(|| self.file_name())
    }

    /// What the table's FILE column shows: the file's name, `-` for a compiled-in plugin.
    fn file_name(&self) -> String {
        self.file
            .as_deref()
            .map_or_else(|| "-".to_owned(), |f| file_name(Path::new(f)))
    }
}

/// Added to the error of a plugin file that is a symbolic link, which the loader refuses.
const SYMLINK_HINT: &str = " (it is a symbolic link: the host loads only regular files, \
     so that a link cannot be pointed elsewhere after the checks; copy the library in instead, \
     `cp -L`)";

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The state shown for a file that did not load with `error`: [`NOT_A_PLUGIN`] for a library
/// without the root symbol, else `state`.
fn state_of(state: PluginState, error: &LoadError) -> &'static str {
    if matches!(error, LoadError::NotAPlugin { .. }) {
        NOT_A_PLUGIN
    } else {
        state.as_str()
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The `list` table: one line per file, each failure's reason on the line below it, and a
/// summary naming the folder (the table shows file names only, to stay narrow); no summary
/// with `--quiet`.
pub fn render_list(rows: &[ListRow], plugins_dir: &Path) -> String {
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                safe::text(&r.shown_name()).into_owned(),
                safe::text(r.version.as_deref().unwrap_or("-")).into_owned(),
                r.state.clone(),
                safe::text(&r.file_name()).into_owned(),
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
        match &row.error {
            // Switched off on purpose: not a failure, and the state says it all.
            Some(_) if row.state == PluginState::Disabled.as_str() => {
                let _ = writeln!(
                    out,
                    "    enabled = false under [plugins.{}] in the host config",
                    safe::text(&row.shown_name())
                );
            }
            Some(error) => {
                let _ = writeln!(out, "    error: {}", safe::text(error));
            }
            None => {}
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
    let disabled = rows
        .iter()
        .filter(|r| r.state == PluginState::Disabled.as_str())
        .count();
    let not_plugins = rows.iter().filter(|r| r.state == NOT_A_PLUGIN).count();
    let other = rows.len() - serving - failed - disabled - not_plugins;
    if crate::output::quiet() {
        return out;
    }
    let _ = write!(
        out,
        "{} plugin file{} in {}: {serving} active, {failed} failed",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        plugins_dir.display()
    );
    if disabled > 0 {
        let _ = write!(out, ", {disabled} disabled");
    }
    if not_plugins > 0 {
        let _ = write!(out, ", {not_plugins} not a plugin");
    }
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
            plugin: (state != NOT_A_PLUGIN).then(|| name.to_owned()),
            version: error.is_none().then(|| "0.1.0".to_owned()),
            state: state.to_owned(),
            file: Some(if state == NOT_A_PLUGIN {
                format!("/p/{name}")
            } else {
                format!("/p/lib{name}.so")
            }),
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
    fn libraries_that_are_not_plugins_are_not_failures() {
        let rows = [
            row("greeter", "active", None),
            row(
                "dependency.dll",
                NOT_A_PLUGIN,
                Some("/p/dependency.dll is not a plugin: no root module"),
            ),
        ];
        let table = render_list(&rows, Path::new("/p"));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[2],
            "dependency.dll  -        not a plugin  dependency.dll"
        );
        assert_eq!(
            lines[4],
            "2 plugin files in /p: 1 active, 0 failed, 1 not a plugin"
        );
    }

    #[test]
    fn list_json_has_null_error() {
        let text = json::to_text(&[row("greeter", "active", None)], false).expect("json");
        assert_eq!(
            text,
            r#"[{"plugin":"greeter","version":"0.1.0","state":"active","file":"/p/libgreeter.so","error":null,"isolation":"in-process"}]"#
        );
    }

    #[test]
    fn a_file_that_is_no_plugin_has_a_null_plugin_and_its_file() {
        let junk = row("libjunk.so", NOT_A_PLUGIN, Some("not a plugin"));
        let text = json::to_text(&junk, false).expect("json");
        assert!(
            text.starts_with(
                r#"{"plugin":null,"version":null,"state":"not a plugin","file":"/p/libjunk.so""#
            ),
            "{text}"
        );
        assert_eq!(junk.shown_name(), "libjunk.so");
        assert_eq!(
            plugin_name("libjunk.so".to_owned(), Some(Path::new("/p/libjunk.so"))),
            None
        );
        assert_eq!(
            plugin_name("junk".to_owned(), Some(Path::new("/p/libjunk.so"))).as_deref(),
            Some("junk")
        );
        // A compiled-in plugin has no file: its name is always its name.
        assert_eq!(
            plugin_name("libjunk.so".to_owned(), None).as_deref(),
            Some("libjunk.so")
        );
    }
}
