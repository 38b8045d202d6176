//! `demo-app` and the terminal it prints to, run as a real child process:
//!
//! 1. a plugin whose strings carry escape sequences cannot drive the terminal (`describe`,
//!    `list`, errors, logs, the shell);
//! 2. a closed stdout or stderr is not an error: exit 0, quietly, no panic;
//! 3. SIGINT and SIGTERM deactivate every plugin and remove the temporary folder before the
//!    exit with 130 or 143, in `watch`, the shell and a one-shot command.
//!
//! Nothing here asserts on time: waits poll with generous bounds.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{self, Receiver},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use tests::{temp_dir, PluginDir};

/// The binary under test.
const DEMO: &str = env!("CARGO_BIN_EXE_demo-app");

/// How long a child may take before the test gives up on it (far beyond a passing run).
const LIMIT: Duration = Duration::from_secs(120);

/// What the escapes fixture's strings must never put on a terminal: ESC, CR, BEL and the
/// 8-bit CSI.
const RAW: [char; 4] = ['\u{1b}', '\r', '\u{7}', '\u{9b}'];

/// `demo-app --plugins <dir> <args>`, stdin closed, `RUST_LOG` cleared.
fn demo_in(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(DEMO);
    command
        .arg("--plugins")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    command
}

/// Exit code, stdout and stderr of a finished child.
#[derive(Debug)]
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `command` to its end with stdout and stderr piped.
fn run(mut command: Command) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("start demo-app");
    let stdout = read_all(child.stdout.take().expect("stdout"));
    let stderr = read_all(child.stderr.take().expect("stderr"));
    let code = wait(&mut child);
    Output {
        code,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn read_all(mut source: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` at most [`LIMIT`]; kills it and fails past that.
fn wait(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("demo-app did not finish within {LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[track_caller]
fn assert_no_raw_controls(what: &str, text: &str) {
    for c in RAW {
        assert!(
            !text.contains(c),
            "{what} carries a raw {c:?}:\n{}",
            text.escape_debug()
        );
    }
}

// ---- 1. escapes from a plugin ----------------------------------------------------------------

#[test]
fn describe_and_list_show_a_plugins_escapes_escaped() {
    let dir = PluginDir::with_fixtures(&["escapes"]);
    for args in [&["describe", "escapes"][..], &["list"], &["-v", "list"]] {
        let out = run(demo_in(dir.path(), args));
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        assert_no_raw_controls(&format!("stdout of {args:?}"), &out.stdout);
        assert_no_raw_controls(&format!("stderr of {args:?}"), &out.stderr);
        // Nothing forged a line that starts with `error:`.
        for line in out.stdout.lines().chain(out.stderr.lines()) {
            assert!(
                !line.starts_with("error:"),
                "{args:?}: forged line {line:?}"
            );
        }
    }
    let out = run(demo_in(dir.path(), &["describe", "escapes"]));
    assert!(
        out.stdout.contains(
            r"\u{1b}[2J\u{1b}[Hcleared\u{1b}[31mred\u{1b}]0;pwned title\u{7}\u{d}\u{a}error: forged"
        ),
        "the description is shown, escaped:\n{}",
        out.stdout
    );
    // The 10 000-character help is cut and says how long it was.
    let help = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("escapes:fail"))
        .expect("the command line");
    assert!(help.ends_with(" chars)"), "{help}");
    assert!(help.contains("…(10 0"), "{help}");
    assert!(
        help.chars().count() < 1200,
        "{} chars",
        help.chars().count()
    );
    // The activation's log record (a warning, shown by default) is escaped too.
    assert!(
        out.stderr.contains(r"escapes: \u{1b}[2J"),
        "the plugin's log record:\n{}",
        out.stderr
    );
}

#[test]
fn a_plugins_error_message_and_the_shell_are_escaped() {
    let dir = PluginDir::with_fixtures(&["escapes"]);
    let out = run(demo_in(dir.path(), &["call", "escapes:fail"]));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_no_raw_controls("stderr of call", &out.stderr);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{}", out.stderr);
    assert!(
        errors[0].contains(r"\u{d}\u{a}error: forged"),
        "{}",
        errors[0]
    );

    // The scripted shell answers JSON, which escapes on its own.
    let mut command = demo_in(dir.path(), &["shell"]);
    command.stdin(Stdio::piped());
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the shell");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"describe escapes\ncall escapes:fail\n")
        .expect("write the script");
    let stdout = read_all(child.stdout.take().expect("stdout"));
    let stderr = read_all(child.stderr.take().expect("stderr"));
    assert_eq!(wait(&mut child), Some(0));
    let stdout = stdout.join().expect("stdout");
    assert_no_raw_controls("the shell's stdout", &stdout);
    assert_no_raw_controls("the shell's stderr", &stderr.join().expect("stderr"));
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
}

// ---- 2. closed pipes ---------------------------------------------------------------------------

/// A pipe whose reading end is already closed, so the first write to it fails with EPIPE.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    writer
}

#[test]
fn a_closed_stdout_or_stderr_is_exit_0_without_a_word() {
    let dir = PluginDir::with_fixtures(&["escapes"]);
    // `demo-app list | true`: stdout closed; stderr must not say anything about it.
    let mut command = demo_in(dir.path(), &["list"]);
    command.stdout(closed_pipe()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("start");
    let stderr = read_all(child.stderr.take().expect("stderr"));
    assert_eq!(wait(&mut child), Some(0));
    let stderr = stderr.join().expect("stderr");
    assert!(
        !stderr.lines().any(|l| l.starts_with("error:")) && !stderr.contains("panicked"),
        "{stderr}"
    );
    // Both closed (`demo-app list 2>&1 | true`), with a warning to log and an error to report:
    // exit 0 all the same, never a panic (101).
    for args in [
        &["list"][..],
        &["call", "escapes:fail"],
        &["describe", "escapes"],
    ] {
        let mut command = demo_in(dir.path(), args);
        command.stdout(closed_pipe()).stderr(closed_pipe());
        let mut child = command.spawn().expect("start");
        let code = wait(&mut child);
        let expected = if args[0] == "call" { 1 } else { 0 };
        assert_eq!(code, Some(expected), "{args:?}");
    }
}

// ---- 4. one report per failure --------------------------------------------------------------

#[test]
fn each_failure_is_reported_once_and_disabled_is_not_failed() {
    let dir = PluginDir::with_fixtures(&["faulty", "farewell"]);
    let scratch = temp_dir("demo-reports");
    let config = scratch.path().join("host.toml");
    fs::write(
        &config,
        "[plugins.farewell]\nenabled = false\n[plugins.faulti]\nenabled = true\n",
    )
    .expect("write the config");
    let config = config.to_str().expect("utf-8 path");

    let out = run(demo_in(dir.path(), &["--config", config, "list"]));
    assert_eq!(out.code, Some(0), "{out:?}");
    let farewell = out
        .stdout
        .lines()
        .find(|l| l.starts_with("farewell"))
        .expect("a farewell row");
    assert!(farewell.contains(" disabled "), "{farewell}");
    assert!(
        !out.stdout.contains("error:"),
        "disabled is no failure:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("1 active, 0 failed, 1 disabled"),
        "{}",
        out.stdout
    );
    // The config's table for a plugin that is not there is named, with the likely fix.
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "warning: the host config has [plugins.faulti], but no plugin in {} is named faulti (did you mean faulty?)",
            dir.path().display()
        ),
    );

    // A panicking command: one `error:` line and no log record about the same panic (the
    // plugin's own panic message comes from its copy of std, which the host does not own).
    let out = run(demo_in(dir.path(), &["call", "faulty:panic"]));
    assert_eq!(out.code, Some(1), "{out:?}");
    let ours: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.starts_with("plugin panic:") && *l != "faulty command panicked on purpose")
        .collect();
    assert_eq!(ours.len(), 1, "{}", out.stderr);
    assert!(ours[0].starts_with("error: "), "{}", ours[0]);

    // A missing plugins folder says that it is the plugins folder.
    let missing = scratch.path().join("nowhere");
    let out = run(demo_in(&missing, &["list"]));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "error: plugins folder {} does not exist (named by --plugins)",
            missing.display()
        )
    );
}

#[test]
fn the_shell_suggests_and_explains() {
    let dir = PluginDir::with_examples(&["echo"]);
    let mut command = demo_in(dir.path(), &["shell"]);
    command.stdin(Stdio::piped());
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the shell");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            b"cal x\ncall echo:revers \"abc\"\ncall echo:reverse abc\nhelp call\ndescribe ecko\n",
        )
        .expect("write the script");
    let stdout = read_all(child.stdout.take().expect("stdout"));
    let _stderr = read_all(child.stderr.take().expect("stderr"));
    assert_eq!(wait(&mut child), Some(0));
    let stdout = stdout.join().expect("stdout");
    let answers: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(answers.len(), 5, "{stdout}");
    let error = |i: usize| answers[i]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error(0).contains("did you mean call?"), "{}", error(0));
    assert!(
        error(1).contains("did you mean echo:reverse?"),
        "{}",
        error(1)
    );
    assert!(error(2).contains(r#"quote it: "abc""#), "{}", error(2));
    assert_eq!(
        answers[3]["commands"].as_array().map(Vec::len),
        Some(1),
        "{}",
        answers[3]
    );
    assert!(error(4).contains("did you mean echo?"), "{}", error(4));
}

// ---- 3. signals --------------------------------------------------------------------------------

/// A plugins folder with `farewell` (writes `active`, then `deactivated`, into a file) and
/// `slow`, a config telling farewell where to write, and a private temporary folder for the
/// child, so that what the host leaves in it can be checked.
struct Stoppable {
    plugins: PluginDir,
    scratch: tempfile::TempDir,
    config: PathBuf,
    mark: PathBuf,
    tmp: PathBuf,
}

impl Stoppable {
    fn new() -> Stoppable {
        let plugins = PluginDir::with_fixtures(&["farewell", "slow"]);
        let scratch = temp_dir("demo-stop");
        let mark = scratch.path().join("farewell.txt");
        let tmp = scratch.path().join("tmp");
        fs::create_dir(&tmp).expect("mkdir tmp");
        let config = scratch.path().join("host.toml");
        fs::write(
            &config,
            // A short grace: `slow:hold` never lets go, and the stop waits that long for it.
            format!(
                "shutdown_grace_ms = 300\n[plugins.farewell.config]\nfile = {:?}\n",
                mark.to_str().expect("utf-8 path")
            ),
        )
        .expect("write the config");
        Stoppable {
            plugins,
            scratch,
            config,
            mark,
            tmp,
        }
    }

    /// `demo-app` over this folder and config, with `TMPDIR` set to the private folder.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = demo_in(self.plugins.path(), &["--config"]);
        command
            .arg(&self.config)
            .args(args)
            .env("TMPDIR", &self.tmp)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn mark(&self) -> String {
        fs::read_to_string(&self.mark).unwrap_or_default()
    }

    /// The entries left in the child's temporary folder.
    fn leftovers(&self) -> Vec<String> {
        fs::read_dir(&self.tmp)
            .expect("read tmp")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    }
}

/// A child whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: Receiver<String>,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    fn start(mut command: Command, stdin: bool) -> Running {
        if stdin {
            command.stdin(Stdio::piped());
        }
        let mut child = command.spawn().expect("start demo-app");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = read_all(child.stderr.take().expect("stderr"));
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// Waits for a stdout line that starts with `prefix`.
    #[track_caller]
    fn wait_for_line(&mut self, prefix: &str) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return,
                Ok(_) => {}
                Err(e) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "no line starting with {prefix:?} ({e}); stderr:\n{}",
                        self.stderr
                            .take()
                            .map(|h| h.join().unwrap_or_default())
                            .unwrap_or_default()
                    );
                }
            }
        }
    }

    /// Sends `signal` (`TERM`, `INT`) to the child with kill(1).
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// Waits for the exit; returns the code and stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        let code = wait(&mut self.child);
        drop(self.stdin.take());
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (code, stderr)
    }
}

#[track_caller]
fn assert_cleaned_up(host: &Stoppable, code: Option<i32>, expected: i32, stderr: &str) {
    assert_eq!(code, Some(expected), "exit code; stderr:\n{stderr}");
    assert_eq!(
        host.mark(),
        "deactivated",
        "farewell's deactivate ran; stderr:\n{stderr}"
    );
    assert_eq!(
        host.leftovers(),
        Vec::<String>::new(),
        "the temporary folder is removed; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("error:"),
        "a signal is not an error:\n{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_and_sigint_stop_watch_after_deactivating_every_plugin() {
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let host = Stoppable::new();
        let mut watch = Running::start(host.command(&["watch", "--debounce-ms", "100"]), false);
        watch.wait_for_line("watching ");
        assert_eq!(host.mark(), "active");
        assert_eq!(
            host.leftovers().len(),
            1,
            "the host's shadow folder is there"
        );
        watch.signal(signal);
        let (exit, stderr) = watch.finish();
        assert_cleaned_up(&host, exit, code, &stderr);
        drop(host.scratch);
    }
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_scripted_shell_and_a_one_shot_call() {
    let host = Stoppable::new();
    let mut shell = Running::start(host.command(&["shell"]), true);
    let stdin = shell.stdin.as_mut().expect("stdin");
    stdin.write_all(b"call farewell:ping\n").expect("write");
    stdin.flush().expect("flush");
    shell.wait_for_line("\"pong\"");
    shell.signal("TERM");
    let (exit, stderr) = shell.finish();
    assert_cleaned_up(&host, exit, 143, &stderr);

    // A call waiting in plugin code: `slow:hold` until released, which never happens.
    let host = Stoppable::new();
    let held = host.scratch.path().join("held");
    fs::create_dir(&held).expect("mkdir");
    let args = format!(r#"{{"dir":{:?}}}"#, held.to_str().expect("utf-8"));
    let call = Running::start(host.command(&["call", "slow:hold", &args]), false);
    let started = held.join("started");
    let deadline = Instant::now() + LIMIT;
    while !started.exists() {
        assert!(Instant::now() < deadline, "slow:hold never started");
        thread::sleep(Duration::from_millis(20));
    }
    call.signal("INT");
    let (exit, stderr) = call.finish();
    assert_cleaned_up(&host, exit, 130, &stderr);
}

/// A pseudo-terminal for a child: what it prints arrives on a channel, read from the master
/// side on a thread of its own.
#[cfg(unix)]
struct Pty {
    slave: fs::File,
    output: Receiver<String>,
    /// Kept open so that the child's terminal stays connected (writes to it would be typing).
    _master: fs::File,
}

#[cfg(unix)]
impl Pty {
    fn open() -> Pty {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("open a pty");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        let slave = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().expect("utf-8 pty name"))
            .expect("open the pty's terminal side");
        let master = fs::File::from(master);
        let mut reader = master.try_clone().expect("clone the master");
        let (tx, output) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = [0_u8; 4096];
            // Reading ends with EIO once no process has the terminal open any more.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                if tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        Pty {
            slave,
            output,
            _master: master,
        }
    }

    /// Types `line` and Enter, as a user at the keyboard.
    fn type_line(&self, line: &str) {
        use std::io::Write as _;
        let mut keyboard = &self._master;
        keyboard
            .write_all(format!("{line}\r").as_bytes())
            .expect("type into the terminal");
    }

    /// Gives `command` this terminal as stdin, stdout and stderr.
    fn attach(&self, command: &mut Command) {
        let end = || Stdio::from(self.slave.try_clone().expect("clone the terminal side"));
        command.stdin(end()).stdout(end()).stderr(end());
    }

    /// Waits until the child has printed `text`; returns everything printed so far.
    #[track_caller]
    fn wait_for(&self, seen: &mut String, text: &str) {
        let deadline = Instant::now() + LIMIT;
        while !seen.contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => seen.push_str(&chunk),
                Err(e) => panic!("no {text:?} on the terminal ({e}); it shows:\n{seen:?}"),
            }
        }
    }
}

/// The interactive shell (a real terminal, so rustyline's editor) left idle at its prompt and
/// sent SIGTERM: its plugins are deactivated and its temporary folder removed before the exit
/// with 143, though the editor's read cannot be woken; the line typed before is in the history
/// file.
#[cfg(unix)]
#[test]
fn sigterm_stops_the_idle_interactive_shell_with_cleanup() {
    let host = Stoppable::new();
    let pty = Pty::open();
    let mut command = host.command(&["shell"]);
    // History goes to the scratch folder, not the user's data folder.
    command.env("XDG_DATA_HOME", host.scratch.path().join("data"));
    pty.attach(&mut command);
    let mut child = command.spawn().expect("start the shell");
    let mut seen = String::new();
    pty.wait_for(&mut seen, "demo> ");
    pty.type_line("help clear");
    pty.wait_for(&mut seen, "empty the screen");
    assert_eq!(host.mark(), "active");
    assert_eq!(
        host.leftovers().len(),
        1,
        "the host's shadow folder is there"
    );
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM");
    let code = wait(&mut child);
    assert_eq!(code, Some(143), "exit code; the terminal shows:\n{seen:?}");
    assert_eq!(host.mark(), "deactivated", "farewell's deactivate ran");
    assert_eq!(
        host.leftovers(),
        Vec::<String>::new(),
        "the temporary folder is removed"
    );
    let history = host
        .scratch
        .path()
        .join("data")
        .join("native-plugins")
        .join("shell_history");
    let kept = fs::read_to_string(&history)
        .unwrap_or_else(|e| panic!("{}: {e}; the terminal shows:\n{seen:?}", history.display()));
    assert!(
        kept.lines().any(|l| l == "help clear"),
        "the line typed before the signal is kept:\n{kept}"
    );
}

/// On a terminal, `list` counts the load file by file (`loading 3/9 [...]`), from the host's
/// progress reports; piped, stderr stays empty (the other tests here see only their lines).
#[cfg(unix)]
#[test]
fn list_on_a_terminal_counts_the_files_as_they_load() {
    let dir = PluginDir::with_examples(&tests::EXAMPLES);
    let pty = Pty::open();
    let mut command = demo_in(dir.path(), &["list"]);
    pty.attach(&mut command);
    let mut child = command.spawn().expect("start list");
    let mut seen = String::new();
    // The example debug libraries take long enough to open that the bar is drawn at least once.
    pty.wait_for(&mut seen, &format!("/{} [", tests::EXAMPLES.len()));
    assert_eq!(wait(&mut child), Some(0));
    assert!(
        seen.contains("loading ") || seen.contains("activating "),
        "{seen:?}"
    );
    let piped = run(demo_in(dir.path(), &["list"]));
    assert_eq!(piped.code, Some(0));
    assert_eq!(piped.stderr, "", "no progress into a pipe");
}
