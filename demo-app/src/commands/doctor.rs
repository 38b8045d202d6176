//! `doctor`: what each file of the plugins folder is, what would stop it from activating and
//! how to fix that, and the activation order — without activating anything.

use std::{fmt::Write as _, path::Path};

use loader::{DoctorReport, FileDiagnosis, Host, ImageFacts};
use plugin_api::ErrorKind;

use crate::{error::AppError, progress::Progress, safe};

/// How many hex digits of a SHA-256 the text output shows.
const SHORT_SHA: usize = 12;

/// Diagnoses `host`'s plugins folder (`plugins_dir`, named for the progress note). Activates
/// nothing, so `demo-app doctor` runs it on a host that has loaded nothing.
///
/// # Errors
/// The folder cannot be listed.
pub fn diagnose(host: &Host, plugins_dir: &Path) -> Result<DoctorReport, AppError> {
    let _progress = Progress::follow_loads(&format!("examining {}", plugins_dir.display()));
    host.diagnose(None).map_err(|e| AppError::from_error(&e))
}

/// The error `doctor` exits with when the report is not healthy (after printing it).
pub fn unhealthy(report: &DoctorReport) -> Option<AppError> {
    let sick = report
        .files
        .iter()
        .filter(|f| !f.problems.is_empty())
        .count();
    if let (0, Some(reason)) = (sick, &report.manifest_reader) {
        return Some(AppError::failed(ErrorKind::Failed, reason.clone()));
    }
    (sick > 0).then(|| {
        AppError::failed(
            ErrorKind::Failed,
            format!(
                "{sick} of {} plugin files in {} {} problems",
                report.files.len(),
                report.folder.display(),
                if sick == 1 { "has" } else { "have" }
            ),
        )
    })
}

/// The report as text for people: a header naming the folder and the versions, each file, the
/// activation order and a count (without the header and the count with `--quiet`).
pub fn render_doctor(report: &DoctorReport, verbose: bool) -> String {
    let quiet = crate::output::quiet();
    let mut out = String::new();
    if !quiet {
        let _ = writeln!(
            out,
            "plugins folder {} (host {}, plugin-api {})",
            report.folder.display(),
            report.host_version,
            report.api_version
        );
    }
    if let Some(reason) = &report.manifest_reader {
        let _ = writeln!(out, "no manifest was read: {reason}");
    }
    for (i, file) in report.files.iter().enumerate() {
        if i > 0 || !quiet {
            out.push('\n');
        }
        push_file(&mut out, file, verbose);
    }
    let healthy = report
        .files
        .iter()
        .filter(|f| f.problems.is_empty())
        .count();
    let _ = writeln!(
        out,
        "\nactivation order: {}",
        safe::text(&joined(&report.activation_order))
    );
    if quiet {
        return out;
    }
    let _ = writeln!(
        out,
        "{} file{}: {healthy} ok, {} with problems",
        report.files.len(),
        if report.files.len() == 1 { "" } else { "s" },
        report.files.len() - healthy
    );
    out
}

fn push_file(out: &mut String, f: &FileDiagnosis, verbose: bool) {
    let what = match (&f.name, &f.version) {
        (Some(name), Some(version)) => format!("plugin {name} {version}"),
        (Some(name), None) => format!("plugin {name}"),
        (None, _) if f.is_plugin => "plugin (manifest not read)".to_owned(),
        (None, _) => "not a plugin".to_owned(),
    };
    let verdict = match f.problems.len() {
        0 => "ok".to_owned(),
        1 => "1 problem".to_owned(),
        n => format!("{n} problems"),
    };
    // Names, versions and error texts come from the file: shown terminal-safe.
    let _ = writeln!(
        out,
        "{}: {}: {verdict}",
        safe::text(&file_name(&f.file)),
        safe::text(&what)
    );
    let mut field = |label: &str, value: &str| {
        let _ = writeln!(out, "  {label:<15}{}", safe::text(value));
    };
    if let Some(image) = &f.image {
        field("image:", &image_line(image));
    }
    if let Some(api) = &f.api_version {
        field("api version:", api);
    }
    if let Some(sha) = &f.sha256 {
        field("sha256:", &short_sha(sha));
    }
    if f.name.is_some() {
        field("dependencies:", &joined(&f.dependencies));
        field("declared:", &joined(&f.declared));
        field("granted:", &joined(&f.granted));
    }
    for problem in &f.problems {
        let _ = writeln!(out, "  problem: {}", safe::text(&problem.error));
        let _ = writeln!(out, "      fix: {}", safe::text(&problem.fix));
        if let (true, Some(detail)) = (verbose, &problem.detail) {
            for line in detail.lines() {
                let _ = writeln!(out, "           {}", safe::text(line));
            }
        }
    }
}

/// `ELF x86_64, 4 segments, 12 exports, root module, abi_stable 0.11`.
fn image_line(image: &ImageFacts) -> String {
    let mut line = format!(
        "{} {}, {} segment{}, {} export{}, {}",
        image.format,
        image.architecture,
        image.segments,
        if image.segments == 1 { "" } else { "s" },
        image.exports,
        if image.exports == 1 { "" } else { "s" },
        if image.exports_root {
            "root module"
        } else {
            "no root module"
        }
    );
    if let Some(abi) = &image.abi_stable {
        let _ = write!(line, ", abi_stable {abi}");
    }
    line
}

fn short_sha(sha: &str) -> String {
    match sha.get(..SHORT_SHA) {
        Some(short) if sha.len() > SHORT_SHA => format!("{short}…"),
        _ => sha.to_owned(),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn joined(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loader::Problem;
    use std::path::PathBuf;

    fn report() -> DoctorReport {
        DoctorReport {
            folder: PathBuf::from("/p"),
            host_version: "0.1.0".to_owned(),
            api_version: "1.0.0".to_owned(),
            files: vec![
                FileDiagnosis {
                    file: PathBuf::from("/p/libgreeter.so"),
                    is_plugin: true,
                    name: Some("greeter".to_owned()),
                    version: Some("0.1.0".to_owned()),
                    api_version: Some("1.0.0".to_owned()),
                    sha256: Some("0123456789abcdef0123".to_owned()),
                    image: Some(ImageFacts {
                        format: "ELF".to_owned(),
                        architecture: "x86_64".to_owned(),
                        segments: 4,
                        exports: 1,
                        exports_root: true,
                        abi_stable: Some("0.11".to_owned()),
                    }),
                    dependencies: vec!["users ^0.1".to_owned()],
                    declared: vec!["emit:greeter:greeted".to_owned()],
                    granted: Vec::new(),
                    problems: vec![Problem {
                        detail: None,
                        error: "capability emit:greeter:greeted is declared but not granted"
                            .to_owned(),
                        fix: "grant it".to_owned(),
                    }],
                },
                FileDiagnosis {
                    file: PathBuf::from("/p/libjunk.so"),
                    is_plugin: false,
                    name: None,
                    version: None,
                    api_version: None,
                    sha256: None,
                    image: None,
                    dependencies: Vec::new(),
                    declared: Vec::new(),
                    granted: Vec::new(),
                    problems: vec![Problem {
                        detail: None,
                        error: "/p/libjunk.so is not a plugin".to_owned(),
                        fix: "remove the file".to_owned(),
                    }],
                },
            ],
            activation_order: vec!["users".to_owned()],
            manifest_reader: None,
        }
    }

    #[test]
    fn text_shows_each_file_problem_and_fix() {
        let text = render_doctor(&report(), false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "plugins folder /p (host 0.1.0, plugin-api 1.0.0)");
        assert_eq!(lines[2], "libgreeter.so: plugin greeter 0.1.0: 1 problem");
        assert!(text.contains("  sha256:        0123456789ab…\n"), "{text}");
        assert!(text.contains("  dependencies:  users ^0.1\n"), "{text}");
        assert!(
            text.contains(
                "  image:         ELF x86_64, 4 segments, 1 export, root module, abi_stable 0.11\n"
            ),
            "{text}"
        );
        assert!(text.contains("  granted:       -\n"), "{text}");
        assert!(
            text.contains("libjunk.so: not a plugin: 1 problem\n"),
            "{text}"
        );
        assert!(text.contains("      fix: remove the file\n"), "{text}");
        assert!(text.ends_with("activation order: users\n2 files: 0 ok, 2 with problems\n"));
    }

    #[test]
    fn unhealthy_counts_files_with_problems() {
        let mut r = report();
        let err = unhealthy(&r).expect("unhealthy");
        assert_eq!(err.to_string(), "2 of 2 plugin files in /p have problems");
        for f in &mut r.files {
            f.problems.clear();
        }
        assert!(unhealthy(&r).is_none());
        r.manifest_reader = Some("x does not speak the loader's worker protocol".to_owned());
        let err = unhealthy(&r).expect("no manifest read");
        assert!(err.to_string().contains("worker protocol"), "{err}");
        assert!(render_doctor(&r, false).contains("no manifest was read: x does not speak"));
    }
}
