//! `new-plugin`: scaffold a plugin crate that builds, tests and loads as it is.

mod template;

use std::{
    fs,
    path::{Component, Path, PathBuf},
};

use plugin_api::ErrorKind;

use crate::{cli::NewPluginArgs, error::AppError};
use template::ApiSource;

/// This repository's root, as of the build: `demo-app/..`. A scaffold created below it depends
/// on this checkout's `plugin-api` and `loader` by path.
const REPOSITORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Creates the crate and prints the next steps.
///
/// # Errors
/// An invalid name or `--api-path` (usage, exit 2); a target folder that exists and is not
/// empty, or a file that cannot be written (exit 1).
pub fn run(args: &NewPluginArgs) -> Result<(), AppError> {
    let created = create(args)?;
    super::print_text(&next_steps(&args.name, &created))
}

/// Checks what can be checked before touching the file system.
///
/// # Errors
/// Usage errors: an invalid name, or an `--api-path` that is not a plugin-api folder with the
/// loader beside it.
pub fn check_usage(args: &NewPluginArgs) -> Result<(), AppError> {
    template::validate_name(&args.name).map_err(|m| AppError::usage(ErrorKind::InvalidInput, m))?;
    if let Some(api) = &args.api_path {
        api_folders(api)?;
    }
    Ok(())
}

/// Writes the crate's files; returns its folder.
fn create(args: &NewPluginArgs) -> Result<PathBuf, AppError> {
    check_usage(args)?;
    let parent = args.path.clone().unwrap_or_else(|| PathBuf::from("."));
    let target = parent.join(&args.name);
    refuse_occupied(&target)?;
    fs::create_dir_all(target.join("src")).map_err(|e| io_failure("cannot create", &target, &e))?;
    let target =
        fs::canonicalize(&target).map_err(|e| io_failure("cannot resolve", &target, &e))?;
    let (plugin_api, loader) = match &args.api_path {
        Some(api) => {
            let (api, loader) = api_folders(api)?;
            (Some(api), Some(loader))
        }
        None => match repository_folders() {
            Some((root, api, loader)) if target.starts_with(&root) => (
                Some(relative(&target, &api)),
                Some(relative(&target, &loader)),
            ),
            _ => (None, None),
        },
    };
    let source = match (&plugin_api, &loader) {
        (Some(plugin_api), Some(loader)) => ApiSource::Path { plugin_api, loader },
        _ => ApiSource::Registry,
    };
    let files = [
        ("Cargo.toml", template::cargo_toml(&args.name, &source)),
        ("src/lib.rs", template::lib_rs(&args.name)),
        (".gitignore", template::GITIGNORE.to_owned()),
    ];
    for (name, text) in files {
        let path = target.join(name);
        fs::write(&path, text).map_err(|e| io_failure("cannot write", &path, &e))?;
    }
    Ok(target)
}

/// Refuses a target that exists and is not an empty folder: nothing of the user's is
/// overwritten.
fn refuse_occupied(target: &Path) -> Result<(), AppError> {
    match fs::read_dir(target) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(AppError::failed(
                ErrorKind::Failed,
                format!(
                    "{} already exists and is not empty; choose another name or --path",
                    target.display()
                ),
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if target.exists() => Err(AppError::failed(
            ErrorKind::Failed,
            format!("{} already exists and is not a folder", target.display()),
        )),
        Err(e) => Err(io_failure("cannot read", target, &e)),
    }
}

/// `--api-path`: the plugin-api folder as given, made absolute, and the loader beside it.
fn api_folders(api: &Path) -> Result<(PathBuf, PathBuf), AppError> {
    let not_api = |why: String| {
        AppError::usage(
            ErrorKind::InvalidInput,
            format!(
                "--api-path {}: {why}; give the plugin-api folder of a checkout of this repository",
                api.display()
            ),
        )
    };
    let api = fs::canonicalize(api).map_err(|e| not_api(e.to_string()))?;
    if !api.join("Cargo.toml").is_file() {
        return Err(not_api("no Cargo.toml there".to_owned()));
    }
    let loader = api.with_file_name("loader");
    if !loader.join("Cargo.toml").is_file() {
        return Err(not_api(format!("no loader crate at {}", loader.display())));
    }
    Ok((api, loader))
}

/// This repository's root, plugin-api and loader folders, when they still exist where the
/// binary was built.
fn repository_folders() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let root = fs::canonicalize(REPOSITORY).ok()?;
    let api = root.join("plugin-api");
    let loader = root.join("loader");
    (api.join("Cargo.toml").is_file() && loader.join("Cargo.toml").is_file())
        .then_some((root, api, loader))
}

/// `to` as seen from folder `from`; both absolute and canonical.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path: PathBuf =
        std::iter::repeat_n(Component::ParentDir, from.len() - common).collect();
    path.extend(&to[common..]);
    path
}

fn io_failure(what: &str, path: &Path, error: &std::io::Error) -> AppError {
    AppError::failed(
        ErrorKind::Failed,
        format!("{what} {}: {error}", path.display()),
    )
}

/// What to do next, with the commands spelled out for this crate.
fn next_steps(name: &str, dir: &Path) -> String {
    let library = loader::library_file_name(name);
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), PathBuf::from);
    let demo =
        std::env::current_exe().map_or_else(|_| "demo-app".to_owned(), |p| p.display().to_string());
    format!(
        "created plugin crate {name} in {dir}

next steps:
  cd {dir}
  cargo test            # runs the plugin in process with loader::testing::Harness
  cargo build           # builds {lib}
  mkdir -p plugins && chmod 700 plugins && cp {lib} plugins/
  {demo} --plugins plugins call {name}:hello
                        # {{\"message\":\"hello from {name}\"}}

The plugins folder must not be writable by others (the host refuses it), hence the chmod.
",
        dir = dir.display(),
        lib = target.join("debug").join(&library).display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_then_descend() {
        assert_eq!(
            relative(Path::new("/r/plugins/hello"), Path::new("/r/plugin-api")),
            PathBuf::from("../../plugin-api")
        );
        assert_eq!(
            relative(Path::new("/r/hello"), Path::new("/r/loader")),
            PathBuf::from("../loader")
        );
    }

    #[test]
    fn occupied_targets_are_refused() {
        let dir = std::env::temp_dir().join(format!("demo-app-scaffold-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert!(refuse_occupied(&dir).is_ok(), "missing is fine");
        fs::create_dir_all(&dir).expect("mkdir");
        assert!(refuse_occupied(&dir).is_ok(), "empty is fine");
        fs::write(dir.join("x"), b"x").expect("write");
        let err = refuse_occupied(&dir).expect_err("not empty");
        assert!(err.to_string().contains("not empty"), "{err}");
        assert!(refuse_occupied(&dir.join("x")).is_err(), "a file");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn next_steps_name_the_library_and_the_command() {
        let text = next_steps("hello-world", Path::new("/w/hello-world"));
        assert!(
            text.contains(&loader::library_file_name("hello-world")),
            "{text}"
        );
        assert!(
            text.contains("--plugins plugins call hello-world:hello"),
            "{text}"
        );
    }

    #[test]
    fn bad_names_are_usage_errors() {
        let args = NewPluginArgs {
            name: "Bad Name".to_owned(),
            path: None,
            api_path: None,
        };
        assert!(matches!(check_usage(&args), Err(AppError::Usage { .. })));
    }
}
