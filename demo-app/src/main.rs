//! Reference host.
#![forbid(unsafe_code)]
fn main() {
    env_logger::init();
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|p| p.to_owned()))
        .unwrap_or_default();
    let pdir = dir.join("plugins");
    std::fs::create_dir_all(&pdir).unwrap();
    for n in [
        "greeter",
        "welcome",
        "audit_log",
        "echo",
        "counter",
        "notes",
        "validator",
        "users",
    ] {
        std::fs::copy(
            dir.join("deps").join(format!("lib{n}.so")),
            pdir.join(format!("lib{n}.so")),
        )
        .unwrap();
    }
    let host = loader::Host::builder()
        .plugins_dir(&pdir)
        .build()
        .expect("host");
    let report = host.load_dir().expect("load");
    for e in &report.entries {
        println!(
            "{:?} {:?} {:?}",
            e.file,
            e.plugin,
            e.error.as_ref().map(|e| e.to_string())
        );
    }
    let r = host.execute(
        "greeter:greet",
        plugin_api::Payload::from_json_str(r#"{"name":"Ada"}"#).unwrap(),
    );
    println!("{:?}", r.map(|p| p.to_json_string()));
    for c in [
        ("welcome:welcome", r#"{"name":"Bob"}"#),
        ("audit-log:recent", r#"{"limit":3}"#),
        ("counter:increment", "{}"),
        ("notes:save", r#"{"title":"  hi ","body":"x"}"#),
        ("notes:save", r#"{"title":"  ","body":"x"}"#),
        ("notes:list", "{}"),
        ("greeter:greet-user", r#"{"id":2}"#),
        ("audit-log:commands", r#"{"limit":2}"#),
    ] {
        let r = host.execute(c.0, plugin_api::Payload::from_json_str(c.1).unwrap());
        println!("{} => {:?}", c.0, r.map(|p| p.to_json_string().unwrap()));
    }
    println!(
        "{:?}",
        host.call(
            "echo",
            "reverse",
            plugin_api::Payload::json("abc").unwrap(),
            None
        )
        .map(|p| p.to_json_string().unwrap())
    );
}
