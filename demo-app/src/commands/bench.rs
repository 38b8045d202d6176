//! `bench`: the loader's benchmark suite (`loader-bench`) run from the command line against the
//! plugin libraries cargo built beside this executable. Each case measures the host and the raw
//! mechanism it is built on in the same run and reports their ratio.
//!
//! Needs no host of its own and ignores `--plugins`, `--data` and `--config`: the suite builds
//! its own hosts over scratch folders, and it runs in this fresh process so that
//! `memory_per_plugin` and `idle_cpu` see nothing else loaded.

use loader_bench::{
    case_names, format_number, run_suite, BenchEnv, BenchError, CaseResult, SuiteOptions,
    SuiteReport,
};
use plugin_api::ErrorKind;

use super::{
    print_line, print_text,
    table::{self, Align},
};
use crate::{
    cli::BenchArgs,
    error::{error_chain, AppError},
    json,
    progress::Progress,
};

/// The command that builds the plugin libraries next to the release binary and runs the suite.
const BUILD_AND_RUN: &str = "cargo run --release -p demo-app -- bench";

/// Runs the suite and prints its report: a table for people, or one JSON object with `--json`.
///
/// A missed target is not an error: the run is reported (exit 0) and the text output names the
/// missed cases.
///
/// # Errors
/// The suite could not run (a plugin library is missing, a case failed to set up): exit 1.
pub fn run(args: &BenchArgs) -> Result<(), AppError> {
    let mut options = if args.quick {
        SuiteOptions::quick()
    } else {
        SuiteOptions::default()
    };
    // The isolation cases start this program as their worker (main calls run_if_worker).
    options.worker_program = std::env::current_exe().ok();
    let every_case = case_names(&options);
    options.only.clone_from(&args.only);
    if case_names(&options).is_empty() {
        return Err(AppError::failed(
            ErrorKind::NotFound,
            format!(
                "bench: no case's name contains {}; the cases are {}",
                args.only.join(" or "),
                every_case.join(", ")
            ),
        ));
    }
    if cfg!(debug_assertions) {
        crate::output::warning(&format!(
            "this is a debug build, whose numbers are not meaningful; measure with `{BUILD_AND_RUN}`"
        ));
    }
    let env = BenchEnv::beside_executable().map_err(|e| bench_error(&e))?;
    let mut notes = ProgressNotes::start(&options);
    let report = run_suite(&env, &options, |case| notes.finished(case));
    drop(notes);
    let report = report.map_err(|e| bench_error(&e))?;
    if args.json {
        print_line(&json::to_text(&report, false)?)
    } else {
        print_text(&render_bench(&report))
    }
}

/// The one-line error for a suite that could not run; a missing library says how to build it.
fn bench_error(error: &BenchError) -> AppError {
    match error {
        BenchError::MissingLibrary { path, .. } => AppError::failed(
            ErrorKind::NotFound,
            format!(
                "cannot run the benchmarks: plugin library {} not found; `{BUILD_AND_RUN}` builds the benchmark and example plugins next to the program and runs the suite",
                path.display()
            ),
        ),
        other => AppError::failed(
            ErrorKind::Failed,
            format!("cannot run the benchmarks: {}", error_chain(other)),
        ),
    }
}

/// The progress bar on stderr (only on a terminal): cases done out of all, the time so far,
/// the case running now and how the last one came out.
struct ProgressNotes {
    /// The suite's cases in the order it runs them.
    names: Vec<String>,
    done: usize,
    scaling: bool,
    bar: Progress,
}

impl ProgressNotes {
    fn start(options: &SuiteOptions) -> Self {
        let names = case_names(options);
        let bar = Progress::counter(&running(&names, 0, None), names.len() as u64);
        ProgressNotes {
            names,
            done: 0,
            scaling: options.scaling && options.only.is_empty(),
            bar,
        }
    }

    fn finished(&mut self, case: &CaseResult) {
        self.done += 1;
        self.bar.set_position(self.done as u64);
        let all = self.done >= self.names.len();
        let message = if all && self.scaling {
            "bench: measuring how the costs grow".to_owned()
        } else if all {
            "bench: done".to_owned()
        } else {
            running(&self.names, self.done, Some(case))
        };
        self.bar.set_message(&message);
    }
}

/// `bench: running load_one (last: load_100 ratio 1.20, met)`: `names[done]` is running.
fn running(names: &[String], done: usize, last: Option<&CaseResult>) -> String {
    let next = names.get(done).map_or("the next case", String::as_str);
    match last {
        Some(case) => format!(
            "bench: running {next} (last: {} {})",
            case.name,
            outcome(case)
        ),
        None => format!("bench: running {next}"),
    }
}

/// A case's measurement in a few words: its ratio, or its value where it has no baseline.
fn outcome(case: &CaseResult) -> String {
    let value = match (case.ratio, case.ours) {
        (Some(ratio), _) => format!("ratio {ratio:.2}"),
        (None, Some(ours)) => format!("{} {}", format_number(Some(ours)), case.unit),
        (None, None) => "n/a".to_owned(),
    };
    if is_report_only(case) {
        value
    } else if case.met {
        format!("{value}, met")
    } else {
        format!("{value}, missed ({})", case.target)
    }
}

/// Whether the case only reports (no target to meet).
fn is_report_only(case: &CaseResult) -> bool {
    case.target == "report"
}

/// The report for people: the machine, the cases as a table, each case's note, the growth
/// curves (full runs), then which targets were missed.
pub fn render_bench(report: &SuiteReport) -> String {
    let m = &report.machine;
    let mut out = format!(
        "machine: {} CPUs, {}, {} ({} build)\n\n",
        m.cpus, m.cpu_model, m.os, m.profile
    );
    let header = ["CASE", "OURS", "BASELINE", "UNIT", "RATIO", "TARGET", "MET"];
    let align = [
        Align::Left,
        Align::Right,
        Align::Right,
        Align::Left,
        Align::Right,
        Align::Left,
        Align::Left,
    ];
    let rows: Vec<Vec<String>> = report
        .cases
        .iter()
        .map(|c| {
            let met = if is_report_only(c) {
                "—"
            } else if c.met {
                "yes"
            } else {
                "NO"
            };
            vec![
                c.name.clone(),
                format_number(c.ours),
                format_number(c.baseline),
                c.unit.clone(),
                ratio(c.ratio),
                c.target.clone(),
                met.to_owned(),
            ]
        })
        .collect();
    out.push_str(&table::render(&header, &align, &rows));

    let notes: Vec<&CaseResult> = report.cases.iter().filter(|c| !c.note.is_empty()).collect();
    if !notes.is_empty() {
        out.push_str("\nnotes:\n");
        for c in notes {
            out.push_str(&format!("  {}: {}\n", c.name, c.note));
        }
    }

    if !report.scaling.is_empty() {
        out.push_str("\nhow the costs grow:\n");
        let header = [
            "CASE",
            "PARAMETER",
            "VALUE",
            "OURS",
            "BASELINE",
            "UNIT",
            "RATIO",
        ];
        let align = [
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Left,
            Align::Right,
        ];
        let rows: Vec<Vec<String>> = report
            .scaling
            .iter()
            .map(|p| {
                vec![
                    p.case.clone(),
                    p.parameter.clone(),
                    p.value.to_string(),
                    format_number(Some(p.ours)),
                    format_number(p.baseline),
                    p.unit.clone(),
                    ratio(p.ratio),
                ]
            })
            .collect();
        out.push_str(&table::render(&header, &align, &rows));
    }

    out.push('\n');
    out.push_str(&verdict(report));
    out.push('\n');
    out
}

/// One line: every target met, or which were missed and by what.
fn verdict(report: &SuiteReport) -> String {
    let targets = report.cases.iter().filter(|c| !is_report_only(c)).count();
    let missed: Vec<String> = report
        .cases
        .iter()
        .filter(|c| !c.met)
        .map(|c| {
            let value = match (c.ratio, c.ours) {
                (Some(r), _) => format!("ratio {r:.2}"),
                (None, Some(ours)) => format!("{} {}", format_number(Some(ours)), c.unit),
                (None, None) => "n/a".to_owned(),
            };
            format!("{} ({value}; target {})", c.name, c.target)
        })
        .collect();
    if missed.is_empty() {
        "all targets met".to_owned()
    } else {
        format!(
            "{} of {targets} targets missed: {}",
            missed.len(),
            missed.join(", ")
        )
    }
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use loader_bench::Machine;

    use super::*;

    fn case(name: &str, ours: f64, baseline: Option<f64>, target: &str, met: bool) -> CaseResult {
        CaseResult {
            name: name.to_owned(),
            ours: Some(ours),
            baseline,
            unit: "µs".to_owned(),
            ratio: baseline.map(|b| ours / b),
            target: target.to_owned(),
            met,
            note: String::new(),
        }
    }

    fn report(cases: Vec<CaseResult>) -> SuiteReport {
        SuiteReport {
            machine: Machine {
                cpus: 2,
                cpu_model: "Test CPU".to_owned(),
                os: "linux".to_owned(),
                profile: "release".to_owned(),
            },
            cases,
            scaling: Vec::new(),
        }
    }

    #[test]
    fn the_table_names_the_missed_targets() {
        let mut roundtrip = case("command_roundtrip", 80.4, Some(13.8), "ratio ≤ 1.3", false);
        roundtrip.note = "58 B request".to_owned();
        let text = render_bench(&report(vec![
            roundtrip,
            case("load_100", 233.0, Some(156.0), "report", true),
            case("reload_swap", 7.25, None, "≤ 5 ms, 0 lost", false),
        ]));
        assert!(text.starts_with("machine: 2 CPUs, Test CPU, linux (release build)\n"));
        assert!(
            text.contains("CASE               OURS  BASELINE  UNIT  RATIO  TARGET          MET\n"),
            "{text}"
        );
        assert!(
            text.contains("command_roundtrip  80.4      13.8  µs     5.83  ratio ≤ 1.3     NO\n"),
            "{text}"
        );
        assert!(
            text.contains("load_100            233       156  µs     1.49  report          —\n"),
            "{text}"
        );
        assert!(
            text.contains("reload_swap        7.25       n/a  µs        —  ≤ 5 ms, 0 lost  NO\n"),
            "{text}"
        );
        assert!(text.contains("\nnotes:\n  command_roundtrip: 58 B request\n"));
        assert!(text.ends_with(
            "2 of 2 targets missed: command_roundtrip (ratio 5.83; target ratio ≤ 1.3), reload_swap (7.25 µs; target ≤ 5 ms, 0 lost)\n"
        ), "{text}");
    }

    #[test]
    fn all_met_says_so() {
        let text = render_bench(&report(vec![
            case("recorder_overhead", 100.0, Some(95.0), "ratio ≤ 1.1", true),
            case("direct_call", 340.0, Some(259.0), "report", true),
        ]));
        assert!(text.ends_with("\nall targets met\n"), "{text}");
    }

    #[test]
    fn a_missing_library_names_the_file_and_the_build_command() {
        let error = bench_error(&BenchError::MissingLibrary {
            crate_name: "bench-echo".to_owned(),
            path: PathBuf::from("/x/deps/libbench_echo.so"),
        });
        let text = error.to_string();
        assert!(
            text.contains("/x/deps/libbench_echo.so not found"),
            "{text}"
        );
        assert!(
            text.contains("cargo run --release -p demo-app -- bench"),
            "{text}"
        );
        assert_eq!(error.exit_code(), std::process::ExitCode::from(1));
    }
}
