//! validator in the in-process test harness.
use loader::testing::Harness;
use plugin_api::{ErrorKind, Payload};

#[test]
fn before_save_trims_titles_and_vetoes_empty_ones() {
    let h = Harness::new(plugin_api::static_plugin!(validator::Validator)).unwrap();
    let note = validator::Note {
        title: "  hi  ".into(),
        body: "b".into(),
    };
    let out = h
        .host()
        .run_hook("before:save", Payload::encode(&note).unwrap())
        .unwrap();
    assert_eq!(out.decode::<validator::Note>().unwrap().title, "hi");
    let empty = validator::Note {
        title: "   ".into(),
        body: "b".into(),
    };
    let err = h
        .host()
        .run_hook("before:save", Payload::encode(&empty).unwrap())
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Vetoed);
    assert!(
        err.message().contains("validator") && err.message().contains("title must not be empty"),
        "{err}"
    );
}
