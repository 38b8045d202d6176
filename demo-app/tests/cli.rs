//! The `demo-app` binary as a user runs it: each test starts the real executable as a child
//! process (with `--plugins <private temp folder>`, except the one test of the default folder
//! and the one of `bench`, which uses no plugins folder) and checks its stdout, stderr and exit
//! code.
//!
//! Exit codes: 0 success, 1 failed operation, 2 bad usage; errors are one `error: ...` line on
//! stderr. Nothing here asserts on time: waits poll with generous bounds.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{
    cargo_program, fixture, library_file_name, replace_by_rename, target_dir, temp_dir, PluginDir,
    EXAMPLES,
};

/// The binary under test, built by cargo for these tests.
const DEMO: &str = env!("CARGO_BIN_EXE_demo-app");

/// How long a one-shot command may take before the test gives up on it (it kills the child
/// then). Far beyond anything a passing run needs: loading is well under a second.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// How long `bench --quick` may take before the test gives up on it: seconds in a release
/// build, about ten in a debug build, whose plugin libraries are ~15 MB each. Far beyond
/// anything a passing run needs, on a loaded machine too.
const BENCH_LIMIT: Duration = Duration::from_secs(600);

/// How long the live tests (`watch`) wait for an expected line of output.
const LINE_LIMIT: Duration = Duration::from_secs(20);

// ---- helpers -------------------------------------------------------------------------------

/// What a finished child printed and how it exited.
#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    /// Asserts exit code `code`, showing everything the child printed when it differs.
    #[track_caller]
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts success (exit 0).
    #[track_caller]
    fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// stdout as one JSON value.
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{}", self.stdout))
    }

    /// Asserts that stderr is exactly one line, `error: ...`, and returns it.
    #[track_caller]
    fn error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr:\n{}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{}", lines[0]);
        lines[0]
    }
}

/// `demo-app` with the given arguments; stdin closed, `RUST_LOG` cleared so stderr carries only
/// what the demo prints by default.
fn demo(args: &[&str]) -> Command {
    let mut command = Command::new(DEMO);
    command
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// `demo-app --plugins <dir>` with the given arguments.
fn demo_in(dir: &Path, args: &[&str]) -> Command {
    let mut command = demo(&["--plugins"]);
    command.arg(dir).args(args);
    command
}

/// Runs `command` to the end with `input` on stdin (if any) and collects its output.
fn run_with(command: Command, input: Option<&str>) -> Output {
    run_within(command, input, RUN_LIMIT)
}

/// [`run_with`], killing the child and failing after `limit`.
fn run_within(mut command: Command, input: Option<&str>, limit: Duration) -> Output {
    if input.is_some() {
        command.stdin(Stdio::piped());
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let shown = format!("{command:?}");
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("write stdin of {shown}: {e}"));
        // Dropped here: end of input.
    }
    let stdout = read_all(child.stdout.take().expect("piped stdout"));
    let stderr = read_all(child.stderr.take().expect("piped stderr"));
    let code = wait_bounded(&mut child, &shown, limit);
    Output {
        code,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs `command` to the end and collects its output.
fn run(command: Command) -> Output {
    run_with(command, None)
}

/// Reads `source` to its end on a thread (so a chatty child never blocks on a full pipe).
fn read_all(mut source: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` for at most `limit`; kills it and fails past that.
fn wait_bounded(child: &mut Child, shown: &str, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Each line of `text` as JSON.
#[track_caller]
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("line is not JSON ({e}): {line:?}\nall:\n{text}"))
        })
        .collect()
}

/// How many spaces a line starts with.
fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// A child whose stdout is read line by line as it prints, for `watch`.
struct Live {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Live {
    fn spawn(mut command: Command) -> Live {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start demo-app");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = read_all(child.stderr.take().expect("piped stderr"));
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Live {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Waits (at most [`LINE_LIMIT`]) until a line printed so far matches `pred`; returns it.
    #[track_caller]
    fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LINE_LIMIT;
        loop {
            if let Some(line) = self.seen.iter().find(|l| pred(l)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    self.stop();
                    panic!(
                        "gave up after {LINE_LIMIT:?} waiting for {what}; stdout so far:\n{}\n--- stderr ---\n{}",
                        self.seen.join("\n"),
                        self.stderr_text()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    panic!(
                        "stdout closed while waiting for {what}; stdout:\n{}\n--- stderr ---\n{}",
                        self.seen.join("\n"),
                        self.stderr_text()
                    );
                }
            }
        }
    }

    /// Ends the child (ours, by its handle) and reaps it.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stderr_text(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- 1. the default plugins folder ---------------------------------------------------------

/// The README's run line: no `--plugins`, so the example plugins are staged into `plugins/`
/// beside the binary and all activate.
#[test]
fn list_without_plugins_flag_stages_and_activates_every_example() {
    let table = run(demo(&["list"]));
    table.ok();
    for name in EXAMPLES {
        let row = table
            .stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", table.stdout));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[2], "active", "{row}");
        assert_eq!(cells[3], library_file_name(name), "{row}");
    }
    let header = table.stdout.lines().next().expect("a header line");
    assert!(header.starts_with("NAME"), "{header}");

    let listed = run(demo(&["list", "--json"]));
    listed.ok();
    assert_eq!(listed.stdout.lines().count(), 1, "{}", listed.stdout);
    let rows = listed.json();
    let rows = rows.as_array().expect("a JSON array");
    assert_eq!(rows.len(), EXAMPLES.len(), "{rows:?}");
    let staged = Path::new(DEMO)
        .parent()
        .expect("the binary's folder")
        .join("plugins");
    for name in EXAMPLES {
        let row = rows
            .iter()
            .find(|r| r["plugin"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {rows:?}"));
        assert_eq!(row["version"], "0.1.0", "{row}");
        assert_eq!(row["state"], "active", "{row}");
        assert_eq!(row["error"], Value::Null, "{row}");
        let file = PathBuf::from(row["file"].as_str().expect("file is a string"));
        assert_eq!(file, staged.join(library_file_name(name)), "{row}");
    }
}

// ---- 2. describe ---------------------------------------------------------------------------

#[test]
fn describe_shows_commands_emits_and_capabilities() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let out = run(demo_in(dir.path(), &["describe", "greeter", "--json"]));
    out.ok();
    let d = out.json();
    assert_eq!(d["plugin"], "greeter");
    assert_eq!(d["state"], "active");
    let commands: Vec<&str> = d["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| c["name"].as_str().expect("command name"))
        .collect();
    assert_eq!(commands, ["greet", "greet-user"]);
    assert_eq!(d["emits"], serde_json::json!(["greeter:greeted"]));
    let caps = &d["capabilities"];
    for list in ["declared", "granted"] {
        let items = caps[list].as_array().expect(list);
        assert!(
            items.contains(&Value::from("emit:greeter:greeted")),
            "{list}: {caps}"
        );
        assert!(
            items.contains(&Value::from("provider:users")),
            "{list}: {caps}"
        );
    }
    assert_eq!(caps["denied"], serde_json::json!([]));

    let text = run(demo_in(dir.path(), &["describe", "greeter"]));
    text.ok();
    assert!(
        text.stdout.starts_with("greeter 0.1.0 (active)"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("greeter:greet-user"),
        "{}",
        text.stdout
    );
}

#[test]
fn describe_lists_rpc_and_provider_methods_with_their_help() {
    let dir = PluginDir::with_examples(&["echo", "users"]);
    let out = run(demo_in(dir.path(), &["describe", "echo"]));
    out.ok();
    assert!(out.stdout.contains("  rpc methods:\n"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("    upper    the string in upper case\n"),
        "{}",
        out.stdout
    );
    let out = run(demo_in(dir.path(), &["describe", "users", "--json"]));
    out.ok();
    let d = out.json();
    let methods: Vec<&str> = d["providers"][0]["methods"]
        .as_array()
        .expect("provider methods")
        .iter()
        .map(|m| m["name"].as_str().expect("method name"))
        .collect();
    assert_eq!(methods, ["get", "list"]);
    let text = run(demo_in(dir.path(), &["describe", "users"]));
    assert!(
        text.stdout.contains("  provider users methods:\n    get "),
        "{}",
        text.stdout
    );
}

#[test]
fn describe_shows_registrations_in_force_and_the_patterns_that_allow_them() {
    let dir = PluginDir::with_examples(&["scripts"]);
    let out = run(demo_in(dir.path(), &["describe", "scripts", "--json"]));
    out.ok();
    let d = out.json();
    assert_eq!(d["patterns"]["commands"], serde_json::json!(["script-*"]));
    let registrations = d["registrations"].as_array().expect("registrations");
    assert_eq!(registrations.len(), 1, "{d}");
    let r = &registrations[0];
    assert_eq!(r["kind"], "command", "{r}");
    assert_eq!(r["name"], "script-hello", "{r}");
    assert_eq!(r["pattern"], "script-*", "{r}");
    assert_eq!(r["plugin"], "scripts", "{r}");
    assert!(r["id"].is_u64(), "{r}");
    // Its activation started a report timer (every 60 s unless configured).
    assert_eq!(
        d["timers"],
        serde_json::json!([{"event": "report", "repeats": true, "interval_ms": 60000}]),
        "{d}"
    );

    let text = run(demo_in(dir.path(), &["describe", "scripts"]));
    text.ok();
    assert!(
        text.stdout
            .contains("  may register:\n    commands  script-*\n"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("  registered:\n    command scripts:script-hello  script: hello, {name}! (allowed by script-*, id "),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("  timers:\n    event report  every 60000 ms\n"),
        "{}",
        text.stdout
    );
    let call = run(demo_in(
        dir.path(),
        &["call", "scripts:script-hello", r#"{"name":"Ada"}"#],
    ));
    call.ok();
    assert!(call.stdout.contains("hello, Ada!"), "{}", call.stdout);
}

#[test]
fn describe_unknown_plugin_fails_with_one_line() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let out = run(demo_in(dir.path(), &["describe", "nope"]));
    out.expect_code(1);
    assert_eq!(out.stdout, "");
    let line = out.error_line();
    assert!(line.starts_with("error: no plugin named nope "), "{line}");
    assert!(line.contains("greeter"), "names the loaded plugins: {line}");
}

// ---- 3. call and usage errors --------------------------------------------------------------

#[test]
fn call_prints_the_reply_exactly() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let out = run(demo_in(
        dir.path(),
        &["call", "greeter:greet", r#"{"name":"Ada"}"#],
    ));
    out.ok();
    assert_eq!(out.stdout, "{\"message\":\"Hello, Ada!\"}\n");
    assert_eq!(out.stderr, "");
}

/// The README's config sample is true: greeter reads `salutation` from its table.
#[test]
fn greeter_reads_its_salutation_from_the_host_config() {
    let dir = PluginDir::with_examples(&["greeter", "users"]);
    let scratch = temp_dir("demo-config");
    let config = scratch.path().join("host.toml");
    std::fs::write(&config, "[plugins.greeter.config]\nsalutation = \"Hi\"\n").expect("write");
    let out = run(demo_in(
        dir.path(),
        &[
            "--config",
            config.to_str().expect("utf-8 path"),
            "call",
            "greeter:greet",
            r#"{"name":"Ada"}"#,
        ],
    ));
    out.ok();
    assert_eq!(out.stdout, "{\"message\":\"Hi, Ada!\"}\n");
}

#[test]
fn call_of_an_unknown_command_fails_with_exit_1() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let out = run(demo_in(dir.path(), &["call", "nope:x"]));
    out.expect_code(1);
    assert_eq!(out.stdout, "");
    assert_eq!(out.error_line(), "error: command not found: nope:x");
}

#[test]
fn invalid_json_and_unknown_subcommands_are_usage_errors() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let bad_json = run(demo_in(dir.path(), &["call", "greeter:greet", "{name"]));
    bad_json.expect_code(2);
    assert_eq!(bad_json.stdout, "");
    let line = bad_json.error_line();
    assert!(line.starts_with("error: invalid json"), "{line}");

    let bad_emit = run(demo_in(dir.path(), &["emit", "data:changed", "[1,"]));
    bad_emit.expect_code(2);

    let unknown = run(demo_in(dir.path(), &["frobnicate"]));
    unknown.expect_code(2);
    assert_eq!(unknown.stdout, "");
    assert!(
        unknown.stderr.contains("frobnicate"),
        "names the word: {}",
        unknown.stderr
    );
}

// ---- 4. the scripted shell -----------------------------------------------------------------

/// The README's example: one JSON value per input line; the greeting event reaches audit-log.
#[test]
fn scripted_shell_answers_each_line_in_json() {
    let dir = PluginDir::with_examples(&["greeter", "audit-log"]);
    let script = "call greeter:greet {\"name\":\"Ada\"}\ncall audit-log:recent {\"limit\":5}\n";
    let out = run_with(demo_in(dir.path(), &["shell"]), Some(script));
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert_eq!(lines[0], r#"{"message":"Hello, Ada!"}"#);
    let recent: Value = serde_json::from_str(lines[1]).expect("JSON");
    let events = recent["events"].as_array().expect("events");
    assert!(events.len() <= 5, "{recent}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "greeter:greeted" && e["source"] == "greeter"),
        "{recent}"
    );
}

#[test]
fn scripted_shell_reports_an_error_and_goes_on() {
    let dir = PluginDir::with_examples(&["greeter", "audit-log"]);
    let script = "call greeter:greet {\"name\":\"Ada\"}\n\
                  call nope:x\n\
                  # a comment, no answer\n\
                  \n\
                  call audit-log:recent {\"limit\":5}\n\
                  frobnicate\n\
                  call greeter:greet {\"name\":\"Grace\"}\n";
    let out = run_with(demo_in(dir.path(), &["shell"]), Some(script));
    out.ok();
    let answers = json_lines(&out.stdout);
    assert_eq!(answers.len(), 5, "{}", out.stdout);
    assert_eq!(answers[0]["message"], "Hello, Ada!");
    assert_eq!(
        answers[1],
        serde_json::json!({"error": "command not found: nope:x", "kind": "not found"})
    );
    assert!(answers[2]["events"].is_array(), "{}", answers[2]);
    assert_eq!(answers[3]["kind"], "invalid input", "{}", answers[3]);
    assert!(
        answers[3]["error"]
            .as_str()
            .is_some_and(|e| e.contains("frobnicate")),
        "{}",
        answers[3]
    );
    assert_eq!(answers[4]["message"], "Hello, Grace!");
}

// ---- 5. emit ---------------------------------------------------------------------------------

#[test]
fn emit_collect_lists_each_subscriber() {
    let dir = PluginDir::with_examples(&["audit-log"]);
    let out = run(demo_in(
        dir.path(),
        &["emit", "data:changed", r#"{"x":1}"#, "--collect"],
    ));
    out.ok();
    assert_eq!(
        out.json(),
        serde_json::json!([{"plugin": "audit-log", "ok": null, "error": null}])
    );

    let sent = run(demo_in(dir.path(), &["emit", "data:changed", r#"{"x":1}"#]));
    sent.ok();
    assert!(sent.json()["id"].is_u64(), "{}", sent.stdout);
}

// ---- 6. storage, hooks, providers ----------------------------------------------------------

#[test]
fn counter_is_durable_across_runs_with_a_data_folder() {
    let dir = PluginDir::with_examples(&["counter"]);
    let data = temp_dir("demo-data-");
    let data_path = data.path().to_str().expect("utf-8 temp path");
    let increment = || {
        let out = run(demo_in(
            dir.path(),
            &["--data", data_path, "call", "counter:increment"],
        ));
        out.ok();
        out.json()["value"].as_u64().expect("value")
    };
    assert_eq!(increment(), 1);
    assert_eq!(increment(), 2);
    // Without --data the count starts over in memory.
    let fresh = run(demo_in(dir.path(), &["call", "counter:increment"]));
    fresh.ok();
    assert_eq!(fresh.json()["value"], 1);
}

#[test]
fn notes_go_through_the_validator_hook() {
    let dir = PluginDir::with_examples(&["notes", "validator"]);
    let saved = run(demo_in(
        dir.path(),
        &["call", "notes:save", r#"{"title":"  hi ","body":"b"}"#],
    ));
    saved.ok();
    assert_eq!(saved.json()["title"], "hi", "{}", saved.stdout);

    let vetoed = run(demo_in(
        dir.path(),
        &["call", "notes:save", r#"{"title":"   ","body":"b"}"#],
    ));
    vetoed.expect_code(1);
    assert_eq!(vetoed.stdout, "");
    let line = vetoed.error_line();
    assert!(
        line.contains("vetoed by validator: title must not be empty"),
        "{line}"
    );
}

#[test]
fn greet_user_uses_the_users_provider() {
    let dir = PluginDir::with_examples(&["greeter", "users"]);
    let out = run(demo_in(
        dir.path(),
        &["call", "greeter:greet-user", r#"{"id":1}"#],
    ));
    out.ok();
    assert_eq!(out.json()["message"], "Hello, Ada Lovelace!");
}

// ---- 7. trace --------------------------------------------------------------------------------

#[test]
fn trace_shows_the_causal_tree_of_a_call() {
    let dir = PluginDir::with_examples(&["greeter", "audit-log"]);
    let out = run(demo_in(
        dir.path(),
        &["trace", "call", "greeter:greet", r#"{"name":"Ada"}"#],
    ));
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let find = |what: &str| {
        lines
            .iter()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no line with {what:?}:\n{}", out.stdout))
    };
    let command = find("Command greeter:greet");
    let event = find("Event greeter:greeted");
    let delivery = find("Delivery greeter:greeted");
    assert_eq!(indent(lines[command]), 0, "{}", out.stdout);
    assert!(
        event > command && indent(lines[event]) > indent(lines[command]),
        "the event sits under the command:\n{}",
        out.stdout
    );
    assert!(
        delivery > event && indent(lines[delivery]) > indent(lines[event]),
        "the delivery sits under the event:\n{}",
        out.stdout
    );
    assert!(
        lines[delivery].contains("-> audit-log"),
        "{}",
        lines[delivery]
    );
    // The load's lifecycle events are left out of a one-shot trace.
    assert!(!out.stdout.contains("plugin:loaded"), "{}", out.stdout);
}

#[test]
fn trace_json_is_one_record_per_line_linked_by_parent() {
    let dir = PluginDir::with_examples(&["greeter", "audit-log"]);
    let out = run(demo_in(
        dir.path(),
        &[
            "trace",
            "--json",
            "call",
            "greeter:greet",
            r#"{"name":"Ada"}"#,
        ],
    ));
    out.ok();
    let records = json_lines(&out.stdout);
    assert!(!records.is_empty());
    for r in &records {
        assert!(r["id"].is_u64(), "{r}");
        assert!(r["parent"].is_u64(), "{r}");
        assert!(r["kind"].is_string(), "{r}");
    }
    let one = |kind: &str, name: &str| {
        records
            .iter()
            .find(|r| r["kind"] == kind && r["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}:\n{}", out.stdout))
    };
    let command = one("command", "greeter:greet");
    let event = one("event", "greeter:greeted");
    let delivery = one("delivery", "greeter:greeted");
    assert_eq!(event["parent"], command["id"], "{}", out.stdout);
    assert_eq!(delivery["parent"], event["id"], "{}", out.stdout);
    assert_eq!(delivery["plugin"], "audit-log");
}

// ---- 8. stats --------------------------------------------------------------------------------

#[test]
fn stats_counts_the_call_it_ran() {
    let dir = PluginDir::with_examples(&["greeter", "audit-log"]);
    let out = run(demo_in(
        dir.path(),
        &[
            "stats",
            "--json",
            "call",
            "greeter:greet",
            r#"{"name":"Ada"}"#,
        ],
    ));
    out.ok();
    let rows = out.json();
    let rows = rows.as_array().expect("a JSON array");
    let greeter = rows
        .iter()
        .find(|r| r["plugin"] == "greeter")
        .unwrap_or_else(|| panic!("no greeter row: {rows:?}"));
    assert!(
        greeter["calls_served"].as_u64().expect("calls_served") >= 1,
        "{greeter}"
    );
    assert_eq!(greeter["state"], "active");

    let table = run(demo_in(dir.path(), &["stats"]));
    table.ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("PLUGIN") && lines[0].contains("CALLS"),
        "{}",
        table.stdout
    );
    assert_eq!(
        lines.len(),
        3,
        "header and one line per plugin:\n{}",
        table.stdout
    );
}

#[test]
fn trace_and_stats_refuse_other_first_commands() {
    let dir = PluginDir::with_examples(&["greeter"]);
    for sub in ["trace", "stats"] {
        let out = run(demo_in(dir.path(), &[sub, "list"]));
        out.expect_code(2);
        assert!(out.error_line().contains("can run first"), "{}", out.stderr);
    }
}

// ---- 9. doctor -------------------------------------------------------------------------------

#[test]
fn doctor_on_the_examples_is_healthy() {
    let dir = PluginDir::with_examples(&EXAMPLES);
    let out = run(demo_in(dir.path(), &["doctor"]));
    out.ok();
    assert!(
        out.stdout.contains("9 files: 9 ok, 0 with problems"),
        "{}",
        out.stdout
    );
}

#[test]
fn doctor_names_a_missing_dependency_and_a_junk_file() {
    let dir = PluginDir::with_examples(&["welcome"]);
    let junk_name = library_file_name("junk");
    dir.add_file(&junk_name, b"this is not a shared library\n");
    let out = run(demo_in(dir.path(), &["doctor"]));
    out.expect_code(1);
    assert!(
        out.stdout.contains(&format!("{junk_name}: not a plugin")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("depends on greeter"),
        "names the missing dependency:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("fix: add plugin greeter"),
        "says how to fix it:\n{}",
        out.stdout
    );
    assert!(out.error_line().contains("have problems"), "{}", out.stderr);

    let json = run(demo_in(dir.path(), &["doctor", "--json"]));
    json.expect_code(1);
    let report = json.json();
    let files = report["files"].as_array().expect("files");
    assert_eq!(files.len(), 2, "{report}");
    assert!(report["activation_order"].is_array(), "{report}");
    let junk = files
        .iter()
        .find(|f| f["file"].as_str().is_some_and(|p| p.ends_with(&junk_name)))
        .expect("the junk file");
    assert_eq!(junk["is_plugin"], false);
    let welcome = files
        .iter()
        .find(|f| f["plugin"] == "welcome")
        .expect("welcome");
    assert!(
        welcome["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p["fix"].as_str().is_some_and(|f| f.contains("greeter"))),
        "{welcome}"
    );
}

#[test]
fn doctor_json_on_a_healthy_folder_has_the_activation_order() {
    let dir = PluginDir::with_examples(&["greeter", "welcome"]);
    let out = run(demo_in(dir.path(), &["doctor", "--json"]));
    out.ok();
    let report = out.json();
    assert_eq!(report["files"].as_array().expect("files").len(), 2);
    assert_eq!(
        report["activation_order"],
        serde_json::json!(["greeter", "welcome"])
    );
}

/// `doctor` opens plugins and reads their manifests in demo-app's own binary re-run as a worker
/// process: a plugin that crashes it is a finding for its file, and demo-app prints the whole
/// report and exits 1 as for any problem.
#[cfg(unix)]
#[test]
fn doctor_reports_a_plugin_that_crashes_its_manifest_reader() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let crashing = dir.add_fixture("segv-manifest");
    let out = run(demo_in(dir.path(), &["doctor"]));
    out.expect_code(1);
    let name = crashing
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    assert!(
        out.stdout
            .contains(&format!("{name}: plugin (manifest not read): 1 problem")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("the manifest reader ended with signal 11 (SIGSEGV)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "{}: plugin greeter 0.1.0: ok",
            library_file_name("greeter")
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.error_line().contains("1 of 2 plugin files"),
        "{}",
        out.stderr
    );
}

/// `doctor` never activates: a plugin whose `activate` fails looks fine to it, while `list`
/// (which loads) shows it failed.
#[test]
fn doctor_does_not_activate() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let failing = dir.add_fixture("activate-fails");
    let doctor = run(demo_in(dir.path(), &["doctor"]));
    doctor.ok();

    let listed = run(demo_in(dir.path(), &["list", "--json"]));
    listed.ok();
    let rows = listed.json();
    let row = rows
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["file"] == failing.to_str().expect("utf-8 path"))
        .unwrap_or_else(|| panic!("fixture not listed: {rows}"));
    assert_eq!(row["state"], "failed", "{row}");
    assert!(row["error"].is_string(), "{row}");
}

/// A library without the root symbol (a dependency shipped beside the plugins, say) is listed
/// as "not a plugin", not counted as a failure, and the command still succeeds.
#[test]
fn list_shows_a_library_without_the_root_symbol_as_not_a_plugin() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let library = dir.add_fixture("not-a-plugin");
    let table = run(demo_in(dir.path(), &["list"]));
    table.ok();
    assert!(
        table.stdout.contains("1 active, 0 failed, 1 not a plugin"),
        "{}",
        table.stdout
    );

    let listed = run(demo_in(dir.path(), &["list", "--json"]));
    listed.ok();
    let rows = listed.json();
    let row = rows
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["file"] == library.to_str().expect("utf-8 path"))
        .unwrap_or_else(|| panic!("library not listed: {rows}"));
    assert_eq!(row["state"], "not a plugin", "{row}");
    let error = row["error"].as_str().expect("the reason");
    assert!(error.contains("no root module"), "{row}");
}

/// Every `--json` output names plugins the same way (README, "JSON output"): `"plugin"` holds a
/// plugin name or `null` for a file that never became one (beside its `"file"`), the host is
/// `"host"`, and what is unknown is `null`, never `""`, `0` or `"-"`.
#[test]
fn json_outputs_share_one_schema() {
    let dir = PluginDir::with_examples(&["greeter", "audit-log"]);
    let library = dir.add_fixture("not-a-plugin");
    let library = library.to_str().expect("utf-8 path");

    let listed = run(demo_in(dir.path(), &["list", "--json"]));
    listed.ok();
    let rows = listed.json();
    let junk = rows
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["file"] == library)
        .unwrap_or_else(|| panic!("library not listed: {rows}"));
    assert_eq!(junk["plugin"], Value::Null, "{junk}");
    assert_eq!(junk["version"], Value::Null, "{junk}");
    assert!(junk.get("name").is_none(), "{junk}");

    let doctor = run(demo_in(dir.path(), &["doctor", "--json"]));
    let report = doctor.json();
    let junk = report["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["file"] == library)
        .unwrap_or_else(|| panic!("library not examined: {report}"));
    assert_eq!(junk["plugin"], Value::Null, "{junk}");
    assert_eq!(
        report["manifest_reader"],
        Value::Null,
        "every key is there: {report}"
    );

    let described = run(demo_in(dir.path(), &["describe", "greeter", "--json"]));
    described.ok();
    assert_eq!(described.json()["plugin"], "greeter");

    let stats = run(demo_in(dir.path(), &["stats", "--json"]));
    stats.ok();
    let stats = stats.json();
    let rows = stats.as_array().expect("array");
    assert_eq!(rows.len(), 2, "plugins only, not the library: {stats}");
    let greeter = rows
        .iter()
        .find(|r| r["plugin"] == "greeter")
        .expect("greeter");
    assert_eq!(greeter["calls_served"], 0, "{greeter}");
    assert_eq!(
        greeter["latency_p50_us"],
        Value::Null,
        "no sample yet: {greeter}"
    );

    let traced = run(demo_in(
        dir.path(),
        &[
            "trace",
            "--json",
            "call",
            "greeter:greet",
            r#"{"name":"Ada"}"#,
        ],
    ));
    traced.ok();
    let records = json_lines(&traced.stdout);
    let command = records
        .iter()
        .find(|r| r["kind"] == "command")
        .expect("the command");
    assert_eq!(command["caller"], "host", "{command}");
    let event = records
        .iter()
        .find(|r| r["kind"] == "event")
        .expect("the event");
    assert_eq!(
        event["plugin"],
        Value::Null,
        "a publication has no target: {event}"
    );
    for record in &records {
        for key in ["caller", "plugin"] {
            assert_ne!(record[key], "", "{key} in {record}");
        }
    }
}

// ---- 10. watch -------------------------------------------------------------------------------

/// `--for-ms` ends the watch on its own.
#[test]
fn watch_stops_after_for_ms() {
    let dir = PluginDir::with_examples(&["counter"]);
    let out = run(demo_in(
        dir.path(),
        &["watch", "--for-ms", "200", "--debounce-ms", "100"],
    ));
    out.ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("watching ") && l.contains("for 200 ms")),
        "{}",
        out.stdout
    );
}

// The live watch tests run for far longer than they need (`--for-ms` well past the line
// bound) and are stopped once the expected lines are seen: a short `--for-ms` could end the
// watch before a busy machine applied the change.

#[test]
fn watch_reloads_a_replaced_file_and_deactivates_a_deleted_one() {
    let v2 = fixture("counter-v2");
    let dir = PluginDir::with_examples(&["counter"]);
    let target = dir.file(&library_file_name("counter"));
    let mut live = Live::spawn(demo_in(
        dir.path(),
        &["watch", "--for-ms", "60000", "--debounce-ms", "100"],
    ));
    live.wait_for("the watching line", |l| l.starts_with("watching "));
    assert!(
        live.seen
            .iter()
            .any(|l| l.starts_with("counter") && l.contains("active")),
        "the table comes first: {:?}",
        live.seen
    );

    replace_by_rename(&v2, &target);
    let reloaded = live.wait_for("the reload", |l| l.starts_with("reloaded"));
    assert!(reloaded.contains("counter 0.1.0 -> 0.2.0"), "{reloaded}");

    std::fs::remove_file(&target).expect("delete the plugin file");
    let gone = live.wait_for("the deactivation", |l| l.starts_with("deactivated"));
    assert!(gone.contains("counter"), "{gone}");
    live.stop();
}

#[test]
fn watch_json_reports_the_reload_with_both_versions() {
    let v2 = fixture("counter-v2");
    let dir = PluginDir::with_examples(&["counter"]);
    let target = dir.file(&library_file_name("counter"));
    let mut live = Live::spawn(demo_in(
        dir.path(),
        &[
            "watch",
            "--json",
            "--for-ms",
            "60000",
            "--debounce-ms",
            "100",
        ],
    ));
    let first = live.wait_for("the watching line", |l| l.contains(r#""event":"watching""#));
    let first: Value = serde_json::from_str(&first).expect("JSON");
    assert_eq!(first["plugins"][0]["plugin"], "counter", "{first}");
    assert_eq!(first["debounce_ms"], 100);

    replace_by_rename(&v2, &target);
    let line = live.wait_for("the reload", |l| l.contains(r#""event":"plugin:reloaded""#));
    let reloaded: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(reloaded["plugin"], "counter", "{line}");
    assert_eq!(reloaded["old_version"], "0.1.0", "{line}");
    assert_eq!(reloaded["new_version"], "0.2.0", "{line}");

    std::fs::remove_file(&target).expect("delete the plugin file");
    live.wait_for("the deactivation", |l| {
        l.contains(r#""event":"plugin:deactivated""#)
    });
    live.stop();
    for line in &live.seen {
        assert!(
            serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object()),
            "every line is a JSON object: {line}"
        );
    }
}

// ---- 11. new-plugin ----------------------------------------------------------------------------

/// The `cargo` running these tests, building into the workspace's own target folder.
///
/// The scaffold is a workspace of its own, but it depends on this checkout's crates by path and
/// carries this repository's `Cargo.lock`: in the same target folder, cargo finds everything
/// but the scaffold, `plugin-api` and `loader` already compiled by the `cargo test` that runs
/// this, and builds in well under a minute instead of compiling the whole tree again. The folder
/// is not locked meanwhile: cargo lets go of it once the test binaries are built.
fn cargo() -> Command {
    let mut command = Command::new(cargo_program());
    command
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null());
    command
}

/// This repository's root.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("demo-app sits in the repository")
        .to_path_buf()
}

/// Scaffolds a plugin outside the repository without `--api-path`, builds it with cargo
/// offline, loads the library with the demo and runs its command; runs the scaffold's own
/// tests. The slowest test here (it compiles the scaffold, plugin-api and loader).
#[test]
fn new_plugin_builds_loads_and_tests() {
    let parent = temp_dir("scaffold-");
    let parent_arg = parent.path().to_str().expect("utf-8 temp path");
    let args = ["new-plugin", "hello-world", "--path", parent_arg];
    let created = run(demo(&args));
    created.ok();
    assert!(
        created.stdout.contains("created plugin crate hello-world"),
        "{}",
        created.stdout
    );
    let crate_dir = parent.path().join("hello-world");
    for file in ["Cargo.toml", "src/lib.rs", ".gitignore"] {
        assert!(crate_dir.join(file).is_file(), "{file} missing");
    }
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("Cargo.toml");
    let manifest: toml::Table = toml::from_str(&manifest).expect("valid TOML");
    assert_eq!(manifest["package"]["name"].as_str(), Some("hello-world"));
    // Outside the repository: this checkout's crates by absolute path, and it says so.
    let api = repository()
        .join("plugin-api")
        .canonicalize()
        .expect("plugin-api");
    assert_eq!(
        manifest["dependencies"]["plugin-api"]["path"].as_str(),
        api.to_str()
    );
    assert!(
        created.stdout.contains("this demo-app's source tree"),
        "{}",
        created.stdout
    );
    // This repository's lock came along: the same versions, so no registry look-up (the
    // build below is offline) and the dependencies compiled by an earlier run are reused.
    assert!(crate_dir.join("Cargo.lock").is_file(), "Cargo.lock copied");

    let mut build = cargo();
    build.args(["build", "--offline"]).current_dir(&crate_dir);
    run_cargo(build, "cargo build");
    let library = target_dir()
        .join("debug")
        .join(library_file_name("hello-world"));
    assert!(library.is_file(), "{} not built", library.display());

    let plugins = PluginDir::new();
    plugins.add_file(
        &library_file_name("hello-world"),
        &std::fs::read(&library).expect("read the built library"),
    );
    let called = run(demo_in(plugins.path(), &["call", "hello-world:hello"]));
    called.ok();
    assert_eq!(called.stdout, "{\"message\":\"hello from hello-world\"}\n");

    let mut test = cargo();
    test.args(["test", "--offline"]).current_dir(&crate_dir);
    let tested = run_cargo(test, "cargo test");
    assert!(
        tested
            .stdout
            .contains("hello_answers_with_a_greeting ... ok"),
        "{}",
        tested.stdout
    );

    // Asked again, it refuses to touch the crate it made.
    let again = run(demo(&args));
    again.expect_code(1);
    assert!(again.error_line().contains("not empty"), "{}", again.stderr);
}

/// Runs cargo without the one-shot time bound (a first build takes minutes); fails with its
/// output when it fails.
fn run_cargo(mut command: Command, what: &str) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let out = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(
        out.code, 0,
        "{what} failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.stdout, out.stderr
    );
    out
}

#[test]
fn new_plugin_refuses_an_occupied_folder() {
    let parent = temp_dir("scaffold-");
    let taken = parent.path().join("taken");
    std::fs::create_dir(&taken).expect("mkdir");
    std::fs::write(taken.join("notes.txt"), b"mine").expect("write");
    let parent_arg = parent.path().to_str().expect("utf-8 temp path");
    let out = run(demo(&["new-plugin", "taken", "--path", parent_arg]));
    out.expect_code(1);
    assert!(
        out.error_line().contains("already exists and is not empty"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(taken.join("notes.txt")).expect("still there"),
        b"mine"
    );
    assert!(!taken.join("Cargo.toml").exists());
}

#[test]
fn new_plugin_refuses_bad_names() {
    let parent = temp_dir("scaffold-");
    let parent_arg = parent.path().to_str().expect("utf-8 temp path");
    for name in ["Bad", "1x"] {
        let out = run(demo(&["new-plugin", name, "--path", parent_arg]));
        out.expect_code(2);
        assert!(
            out.error_line().contains(&format!("plugin name {name:?}")),
            "{}",
            out.stderr
        );
    }
    let left = std::fs::read_dir(parent.path()).expect("list").count();
    assert_eq!(left, 0, "nothing was created");
}

// ---- 12. dead letters ------------------------------------------------------------------------

/// With `event_queue = 1`, a flood of events at the slow fixture (50 ms each) drops the oldest
/// queued ones; the shell's `dead-letters` shows them with the reason.
#[test]
fn shell_dead_letters_after_flooding_a_slow_plugin() {
    let dir = PluginDir::new();
    dir.add_fixture("slow");
    let config_dir = temp_dir("demo-config-");
    let config = config_dir.path().join("host.toml");
    std::fs::write(&config, "event_queue = 1\n").expect("write the config");
    let mut script = String::new();
    for n in 0..20 {
        script.push_str(&format!("emit slow:tick {{\"n\":{n}}}\n"));
    }
    script.push_str("dead-letters\n");
    let mut command = demo_in(dir.path(), &["--config"]);
    command.arg(&config).arg("shell");
    let out = run_with(command, Some(&script));
    out.ok();
    let answers = json_lines(&out.stdout);
    assert_eq!(answers.len(), 21, "{}", out.stdout);
    for sent in &answers[..20] {
        assert!(sent["id"].is_u64(), "{sent}");
    }
    let letters = &answers[20];
    assert!(letters["total"].as_u64().expect("total") >= 1, "{letters}");
    let kept = letters["letters"].as_array().expect("letters");
    assert!(!kept.is_empty(), "{letters}");
    for letter in kept {
        assert_eq!(letter["target"], "slow", "{letter}");
        assert_eq!(letter["name"], "slow:tick", "{letter}");
        assert!(
            letter["reason"]
                .as_str()
                .is_some_and(|r| r.contains("full event queue")),
            "{letter}"
        );
    }
}

#[test]
fn dead_letters_subcommand_with_none() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let text = run(demo_in(dir.path(), &["dead-letters"]));
    text.ok();
    assert_eq!(text.stdout, "no dead letters\n");
    let json = run(demo_in(dir.path(), &["dead-letters", "--json"]));
    json.ok();
    assert_eq!(json.json(), serde_json::json!({"total": 0, "letters": []}));
}

#[test]
fn bench_quick_json_is_one_object_with_every_case() {
    let out = run_within(demo(&["bench", "--quick", "--json"]), None, BENCH_LIMIT);
    out.ok();
    let report = out.json();
    let cases = report["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("an object with a cases array: {report}"));
    let mut names: Vec<&str> = cases
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_else(|| panic!("a name: {c}")))
        .collect();
    names.sort_unstable();
    // Every case of the suite's own list, `load_<n>` named after the quick fleet.
    let mut expected = loader_bench::case_names(&loader_bench::SuiteOptions::quick());
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert!(
        names.contains(&"command_roundtrip")
            && names.contains(&"isolated_roundtrip")
            && names.len() == 13,
        "{names:?}"
    );
    // The isolation cases ran: demo-app is its own worker program.
    for case in cases.iter().filter(|c| {
        c["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("isolated_"))
    }) {
        assert!(case["ours"].is_number(), "{case}");
    }
    for case in cases {
        assert!(case["met"].is_boolean(), "met is a boolean: {case}");
        for key in ["ours", "baseline", "unit", "ratio", "target"] {
            assert!(case.get(key).is_some(), "{key} in {case}");
        }
    }
    let roundtrip = cases
        .iter()
        .find(|c| c["name"] == "command_roundtrip")
        .expect("command_roundtrip");
    assert!(
        roundtrip["ours"].as_f64().is_some_and(|us| us > 0.0),
        "{roundtrip}"
    );
}

#[test]
fn bench_only_runs_the_named_cases_and_names_the_cases_when_none_matches() {
    let out = run_within(
        demo(&["bench", "--quick", "--json", "--only", "isolated_roundtrip"]),
        None,
        BENCH_LIMIT,
    );
    out.ok();
    let report = out.json();
    let cases = report["cases"].as_array().expect("a cases array");
    assert_eq!(cases.len(), 1, "{report}");
    assert_eq!(cases[0]["name"], "isolated_roundtrip", "{report}");
    assert!(
        cases[0]["ours"].as_f64().is_some_and(|us| us > 0.0),
        "{report}"
    );
    assert_eq!(
        report["scaling"],
        serde_json::json!([]),
        "no growth curves for a subset"
    );

    let out = run(demo(&["bench", "--quick", "--only", "nosuch"]));
    out.expect_code(1);
    let line = out.error_line();
    assert!(
        line.contains("nosuch") && line.contains("command_roundtrip") && line.contains("load_5"),
        "{line}"
    );
}

// ---- 12. polish --------------------------------------------------------------------------------

#[test]
fn completions_man_page_and_version() {
    let out = run(demo(&["completions", "bash"]));
    out.ok();
    assert!(out.stdout.contains("complete -F"), "{}", out.stdout);
    assert!(
        out.stdout.contains("new-plugin"),
        "the subcommands are offered"
    );
    let out = run(demo(&["man"]));
    out.ok();
    assert!(
        out.stdout.starts_with(".ie") || out.stdout.contains(".TH demo-app 1"),
        "{}",
        out.stdout
    );
    let out = run(demo(&["--version"]));
    out.ok();
    assert!(out.stdout.contains("plugin-api 1."), "{}", out.stdout);
}

#[test]
fn trace_options_may_follow_its_command_line() {
    let dir = PluginDir::with_examples(&["echo"]);
    let out = run(demo_in(
        dir.path(),
        &["trace", "call", "echo:reverse", "\"ab\"", "--json"],
    ));
    out.ok();
    let records = json_lines(&out.stdout);
    assert!(
        records.iter().any(|r| r["name"] == "echo:reverse"),
        "--json was trace's: {}",
        out.stdout
    );
}

#[cfg(unix)]
#[test]
fn a_symlinked_plugin_is_refused_with_a_hint() {
    let dir = PluginDir::new();
    std::os::unix::fs::symlink(
        tests::example_lib("echo"),
        dir.path().join(library_file_name("echo")),
    )
    .expect("symlink");
    let out = run(demo_in(dir.path(), &["list"]));
    out.ok();
    assert!(out.stdout.contains("symbolic link"), "{}", out.stdout);
    assert!(out.stdout.contains("cp -L"), "{}", out.stdout);
}
