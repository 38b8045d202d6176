//! Example plugin: a `before:save` hook handler (priority 10) for notes.
//!
//! It trims the note's title and vetoes a note whose title is then empty; the body is left as
//! it is. The modified note goes on in the codec it came in.
//!
//! ```
//! use validator::{validate, Note};
//! let note = Note { title: "  Groceries ".into(), body: "milk".into() };
//! assert_eq!(validate(note).unwrap().title, "Groceries");
//! let blank = Note { title: " ".into(), body: String::new() };
//! assert_eq!(validate(blank).unwrap_err(), "title must not be empty");
//! ```
#![forbid(unsafe_code)]

use plugin_api::prelude::*;
use serde::{Deserialize, Serialize};

/// The hook this plugin handles.
pub const BEFORE_SAVE: &str = "before:save";

/// A note on its way to being saved.
///
/// Rust plugins exchange bincode, which has no field names: this must stay field for field the
/// same as the `notes` plugin's note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The title; must not be blank.
    pub title: String,
    /// The text.
    pub body: String,
}

/// Trims the note's title.
///
/// # Errors
/// The veto reason when the trimmed title is empty.
pub fn validate(mut note: Note) -> Result<Note, &'static str> {
    let trimmed = note.title.trim();
    if trimmed.is_empty() {
        return Err("title must not be empty");
    }
    if trimmed.len() != note.title.len() {
        note.title = trimmed.to_owned();
    }
    Ok(note)
}

/// The `before:save` decision for `data`: the trimmed note in the same codec, or a veto.
///
/// # Errors
/// A codec error when `data` is not a note.
pub fn before_save(data: &Payload) -> PluginResult<HookOutcome> {
    match validate(data.decode()?) {
        Ok(note) => Ok(HookOutcome::Continue(data.reply_with(&note)?)),
        Err(reason) => Ok(HookOutcome::Veto(reason.into())),
    }
}

/// The validator plugin; it keeps no state.
#[derive(Debug, Default)]
pub struct Validator;

impl Validator {
    fn before_save(&mut self, _: &Context, data: &Payload) -> PluginResult<HookOutcome> {
        before_save(data)
    }
}

impl Plugin for Validator {
    fn manifest() -> Manifest {
        Manifest::new("validator")
    }

    fn register(api: &mut Registrar<Self>) {
        api.hook(BEFORE_SAVE, 10, Self::before_save);
    }
}

export_plugin!(Validator);

#[cfg(test)]
mod tests {
    use super::*;

    fn note(title: &str) -> Note {
        Note {
            title: title.into(),
            body: " body stays ".into(),
        }
    }

    #[test]
    fn trims_titles_and_keeps_bodies() {
        assert_eq!(validate(note("\t Hello \n")), Ok(note("Hello")));
        assert_eq!(validate(note("Hello")), Ok(note("Hello")));
    }

    #[test]
    fn vetoes_blank_titles() {
        assert_eq!(validate(note("")), Err("title must not be empty"));
        assert_eq!(validate(note("   ")), Err("title must not be empty"));
    }

    #[test]
    fn answers_in_the_input_codec() -> PluginResult<()> {
        let json = Payload::from_json_str(r#"{"title":" Hi ","body":"x"}"#)?;
        let HookOutcome::Continue(out) = before_save(&json)? else {
            panic!("a titled note goes on");
        };
        assert_eq!(out.to_json_string()?, r#"{"title":"Hi","body":"x"}"#);

        let bincode = Payload::encode(&note(" Hi "))?;
        let HookOutcome::Continue(out) = before_save(&bincode)? else {
            panic!("a titled note goes on");
        };
        assert_eq!(out.decode::<Note>()?.title, "Hi");
        Ok(())
    }

    #[test]
    fn blank_titles_are_vetoed_through_the_hook() -> PluginResult<()> {
        let outcome = before_save(&Payload::encode(&note(" "))?)?;
        assert_eq!(outcome, HookOutcome::Veto("title must not be empty".into()));
        Ok(())
    }

    #[test]
    fn non_notes_are_codec_errors() -> PluginResult<()> {
        let err = before_save(&Payload::from_json_str("[1,2]")?).expect_err("not a note");
        assert_eq!(err.kind, ErrorKind::Codec);
        Ok(())
    }
}
