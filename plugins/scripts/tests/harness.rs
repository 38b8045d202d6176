//! scripts in the in-process test harness: commands registered from the config at activation,
//! defined and forgotten at run time.
use loader::testing::Harness;

fn configured(scripts: &str) -> Harness {
    let table: toml::Table = toml::from_str(&format!("scripts = {scripts}")).expect("toml");
    Harness::with_config(plugin_api::static_plugin!(scripts::Scripts), |config| {
        config.plugins.entry("scripts".into()).or_default().config = table;
    })
    .expect("activates")
}

#[test]
fn each_configured_script_is_a_command() {
    let h = configured(r#"{ hello = "hello, {name}!", shout = "{text}!!!" }"#);
    let out = h
        .execute_json("script-hello", r#"{"name":"Ada"}"#)
        .expect("registered at activation");
    assert_eq!(out["output"], "hello, Ada!");
    assert_eq!(out["script"], "hello");
    assert_eq!(
        h.execute_json("script-shout", r#"{"text":"hey"}"#)
            .expect("registered")["output"],
        "hey!!!"
    );
    assert_eq!(
        h.execute_json("list", "null").expect("typed"),
        serde_json::json!(["hello", "shout"])
    );
}

#[test]
fn define_and_forget_change_the_commands_in_force() {
    let h = configured("{}");
    assert!(
        h.execute_json("script-hello", "{}").is_err(),
        "an empty table registers nothing"
    );
    h.execute_json("define", r#"{"name":"bye","template":"bye {name}"}"#)
        .expect("defined");
    assert_eq!(
        h.execute_json("script-bye", r#"{"name":"Bo"}"#)
            .expect("in force")["output"],
        "bye Bo"
    );
    h.execute_json("forget", r#"{"name":"bye"}"#)
        .expect("forgotten");
    let gone = h.execute_json("script-bye", "{}").expect_err("disposed");
    assert_eq!(gone.kind, plugin_api::ErrorKind::NotFound, "{gone}");
}

#[test]
fn a_harness_whose_host_cannot_be_built_says_why_naming_the_folder() {
    let parent = fresh_dir();
    let file = parent.join("not-a-folder");
    std::fs::write(&file, b"a file").expect("write");
    let data = file.join("data");
    let error = Harness::with_config(plugin_api::static_plugin!(scripts::Scripts), |config| {
        config.data_dir = Some(data.clone());
    })
    .expect_err("a data folder under a file cannot be made");
    match &error {
        loader::testing::HarnessError::Build(loader::BuildError::DataDir { path, .. }) => {
            assert_eq!(path, &data);
        }
        other => panic!("expected the data folder's error, got {other:?}"),
    }
    let chain = std::error::Error::source(&error)
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(chain.contains(&data.display().to_string()), "{chain}");
    let _ = std::fs::remove_dir_all(&parent);
}

/// A fresh folder of this test's own under the temporary folder.
fn fresh_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "scripts-harness-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("temp folder");
    dir
}
