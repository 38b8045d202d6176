//! C libraries for the tests of what loading runs, compiled from `tests/c/` with the system's C
//! compiler (`$CC`, else `cc`) once per test process.
//!
//! - [`CLibs::not_a_plugin`]: a valid library without the plugin root symbol whose constructor
//!   leaves a mark;
//! - [`CLibs::lazy_undefined`]: a library that exports a symbol named like the root symbol and
//!   calls an undefined function ([`MISSING_FUNCTION`]) through the PLT, linked `-z lazy`; its
//!   constructor leaves a mark too;
//! - [`CLibs::opener`]: a program that opens a library the way a careless loader would, for
//!   control runs in a child process (which prove the marks and the crash are real).
//!
//! Constructors write their mark into [`CLibs::marks_dir`] (baked in at compile time, one per
//! test process), or into `$`[`MARKER_DIR_ENV`] when set (only ever in a child's environment).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use crate::{library_file_name, target_dir};

/// The function [`CLibs::lazy_undefined`] calls and nothing defines.
pub const MISSING_FUNCTION: &str = "trusted_loading_missing_function";

/// The environment variable that sends constructor marks elsewhere (child processes only).
pub const MARKER_DIR_ENV: &str = "TRUSTED_LOADING_MARKER_DIR";

/// The compiled C libraries of this test process; see the [module docs](self).
#[derive(Debug)]
pub struct CLibs {
    dir: PathBuf,
    marks: PathBuf,
}

static C_LIBS: OnceLock<Result<CLibs, String>> = OnceLock::new();

/// The C libraries, compiled on first use.
///
/// # Panics
/// If the C compiler fails; the message holds the command and its output.
pub fn c_libs() -> &'static CLibs {
    match C_LIBS.get_or_init(CLibs::build) {
        Ok(libs) => libs,
        Err(message) => panic!("{message}"),
    }
}

impl CLibs {
    fn build() -> Result<CLibs, String> {
        let parent = target_dir().join("trusted-loading-c");
        std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        // Inside the target folder (cargo clean removes it), one folder per test process.
        let dir = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&parent)
            .map_err(|e| format!("{}: {e}", parent.display()))?
            .keep();
        let marks = dir.join("marks");
        std::fs::create_dir(&marks).map_err(|e| format!("{}: {e}", marks.display()))?;
        let libs = CLibs { dir, marks };
        let define = format!("-DMARKER_DIR=\"{}\"", libs.marks.display());
        let source = |name: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("c").join(name);
        let out = |path: PathBuf| path.into_os_string();
        compile(&[
            "-shared".into(),
            "-fPIC".into(),
            define.clone().into(),
            "-o".into(),
            out(libs.not_a_plugin()),
            source("not_a_plugin.c").into(),
        ])?;
        compile(&[
            "-shared".into(),
            "-fPIC".into(),
            // Calls through the PLT, bound on first call: what RTLD_NOW must catch at load.
            "-fplt".into(),
            "-Wl,-z,lazy".into(),
            define.into(),
            "-o".into(),
            out(libs.lazy_undefined()),
            source("lazy_undefined.c").into(),
        ])?;
        compile(&[
            "-o".into(),
            out(libs.opener()),
            source("opener.c").into(),
            "-ldl".into(),
        ])?;
        Ok(libs)
    }

    /// The library without the root symbol whose constructor leaves the mark `not-a-plugin`.
    pub fn not_a_plugin(&self) -> PathBuf {
        self.dir.join(library_file_name("c-not-a-plugin"))
    }

    /// The library with a lazily bound call to [`MISSING_FUNCTION`]; its constructor leaves the
    /// mark `lazy-undefined`.
    pub fn lazy_undefined(&self) -> PathBuf {
        self.dir.join(library_file_name("c-lazy-undefined"))
    }

    /// The control program (see `tests/c/opener.c`).
    pub fn opener(&self) -> PathBuf {
        self.dir.join("opener")
    }

    /// Where this process's constructors leave their marks.
    pub fn marks_dir(&self) -> &Path {
        &self.marks
    }

    /// The marks left in [`CLibs::marks_dir`] so far, by name.
    pub fn marks(&self) -> Vec<String> {
        marks_in(&self.marks)
    }

    /// Runs the control program with `mode` on `library`, its constructors' marks going to
    /// `marks` (not this process's folder). Returns its exit status, stdout and stderr.
    ///
    /// # Panics
    /// If the program cannot be started.
    pub fn open_in_child(
        &self,
        mode: &str,
        library: &Path,
        marks: &Path,
    ) -> (std::process::ExitStatus, String, String) {
        let output = Command::new(self.opener())
            .arg(mode)
            .arg(library)
            .env(MARKER_DIR_ENV, marks)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.opener().display()));
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// The names of the files in `dir` (empty if it does not exist).
pub fn marks_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn compile(args: &[std::ffi::OsString]) -> Result<(), String> {
    let compiler = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let mut command = Command::new(&compiler);
    command.args(args);
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|e| format!("cannot run the C compiler: {shown}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "compiling a test library failed ({}): {shown}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
