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
    if crate::output::quiet() {
        return super::print_line(&format!(
            "created plugin crate {} in {}",
            args.name,
            created.dir.display()
        ));
    }
    super::print_text(&next_steps(&args.name, &created.dir, &created.api.origin))
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
fn create(args: &NewPluginArgs) -> Result<Created, AppError> {
    check_usage(args)?;
    let parent = args.path.clone().unwrap_or_else(|| PathBuf::from("."));
    let target = parent.join(&args.name);
    refuse_occupied(&target)?;
    fs::create_dir_all(target.join("src")).map_err(|e| io_failure("cannot create", &target, &e))?;
    let target =
        fs::canonicalize(&target).map_err(|e| io_failure("cannot resolve", &target, &e))?;
    let chosen = choose_api(args, &target)?;
    let source = ApiSource {
        plugin_api: &chosen.plugin_api,
        loader: &chosen.loader,
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
    // The checkout's lock file: the new crate builds with the versions the checkout was tested
    // with, which cargo already has when the checkout was built (no registry look-up, so it
    // builds offline too). Missing in a source tree that was never built: cargo resolves then.
    if let Some(lock) = chosen.lock.as_ref().filter(|lock| lock.is_file()) {
        let path = target.join("Cargo.lock");
        fs::copy(lock, &path).map_err(|e| io_failure("cannot write", &path, &e))?;
    }
    Ok(Created {
        dir: target,
        api: chosen,
    })
}

/// What `new-plugin` made.
struct Created {
    /// The crate's folder.
    dir: PathBuf,
    /// What it depends on.
    api: ChosenApi,
}

/// The plugin-api and loader folders the new crate depends on, as written into its Cargo.toml,
/// and what they are.
struct ChosenApi {
    plugin_api: PathBuf,
    loader: PathBuf,
    /// The Cargo.lock of the checkout, copied into the new crate.
    lock: Option<PathBuf>,
    /// Where they come from, for the message.
    origin: String,
}

/// `--api-path` when given; else the source tree this binary was built from, by a relative
/// path inside it and an absolute one outside.
///
/// # Errors
/// A usage error when `--api-path` is wrong, or when it is missing and the source tree is gone.
fn choose_api(args: &NewPluginArgs, target: &Path) -> Result<ChosenApi, AppError> {
    if let Some(api) = &args.api_path {
        let (plugin_api, loader) = api_folders(api)?;
        let lock = plugin_api.parent().map(|root| root.join("Cargo.lock"));
        return Ok(ChosenApi {
            origin: format!(
                "the checkout at {} (--api-path)",
                display_parent(&plugin_api)
            ),
            plugin_api,
            loader,
            lock,
        });
    }
    let Some((root, api, loader)) = repository_folders() else {
        return Err(AppError::usage(
            ErrorKind::InvalidInput,
            format!(
                "the source tree this demo-app was built from ({REPOSITORY}) is gone: pass \
                 --api-path <checkout>/plugin-api (plugin-api and loader are not on crates.io)"
            ),
        ));
    };
    let inside = target.starts_with(&root);
    let (plugin_api, loader) = if inside {
        (relative(target, &api), relative(target, &loader))
    } else {
        (api, loader)
    };
    Ok(ChosenApi {
        plugin_api,
        loader,
        lock: Some(root.join("Cargo.lock")),
        origin: format!(
            "this demo-app's source tree {} ({} path; --api-path chooses another checkout)",
            root.display(),
            if inside { "by relative" } else { "by absolute" }
        ),
    })
}

/// The folder above `path`, for messages.
fn display_parent(path: &Path) -> String {
    path.parent().unwrap_or(path).display().to_string()
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

/// What to do next, with the commands spelled out for this crate: one command per line, each
/// of which works in a Unix shell and in PowerShell alike (no `&&`, no `-p`).
fn next_steps(name: &str, dir: &Path, origin: &str) -> String {
    let library = loader::library_file_name(name);
    // Relative to the crate folder unless cargo was told to build elsewhere.
    let built = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new("target").join("debug").join(&library),
        |target| PathBuf::from(target).join("debug").join(&library),
    );
    let demo =
        std::env::current_exe().map_or_else(|_| "demo-app".to_owned(), |p| p.display().to_string());
    format!(
        "created plugin crate {name} in {dir}
plugin-api and loader: {origin}

next steps (each line works in sh and in PowerShell):
  cd {dir}
  cargo test            # runs the plugin in process with loader::testing::Harness
  cargo build           # builds {built}
  mkdir plugins
  chmod 700 plugins     # Unix: the host refuses a plugins folder others may write to
  cp {built} plugins
  {demo} --plugins plugins call {name}:hello
                        # {{\"message\":\"hello from {name}\"}}
",
        dir = dir.display(),
        built = built.display(),
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
        let text = next_steps("hello-world", Path::new("/w/hello-world"), "a checkout");
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
