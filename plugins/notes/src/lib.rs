//! Example plugin: saves notes through hooks into the plugin's own storage.
//!
//! | command | arguments | answer |
//! |---|---|---|
//! | `notes:save` | `{"title": ..., "body": ...}` | `{"id": n, "title": ...}` |
//! | `notes:list` | none | `{"notes": [{"id", "title", "body"}, ...]}` |
//!
//! Saving runs hook `before:save` over the note (the `validator` plugin trims the title or
//! vetoes it), stores the note under `note:<id padded to 6 digits>`, emits `document:saved`
//! with `{"id", "title"}` and runs hook `after:save` over the saved note. The plugin does not
//! handle `after:save` itself: a plugin running a hook cannot also be one of its handlers (its
//! own dispatcher thread is busy running the hook; the host refuses it as a call cycle).
//!
//! Ids count up from 1; the next one is kept under the key `next_id`, which `list` walks instead
//! of scanning (scans need the `database` capability).
//!
//! ```
//! assert_eq!(notes::note_key(42), "note:000042");
//! ```
#![forbid(unsafe_code)]

use plugin_api::prelude::*;
use serde::{Deserialize, Serialize};

/// The hook run before a note is stored.
pub const BEFORE_SAVE: &str = "before:save";
/// The hook run after a note is stored.
pub const AFTER_SAVE: &str = "after:save";
/// The event emitted for each stored note.
pub const SAVED_EVENT: &str = "document:saved";
/// The storage key of the next note id.
pub const NEXT_ID_KEY: &str = "next_id";

/// A note as given to `save` and to the `before:save` hook, and as stored.
///
/// Rust plugins exchange bincode, which has no field names: this must stay field for field the
/// same as the `validator` plugin's note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The title.
    pub title: String,
    /// The text.
    pub body: String,
}

/// A stored note with its id: an entry of `list`, and the data of the `after:save` hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedNote {
    /// The note's id.
    pub id: u64,
    /// The title, as the `before:save` hook left it.
    pub title: String,
    /// The text.
    pub body: String,
}

/// The answer of `save`, and the data of the `document:saved` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The note's id.
    pub id: u64,
    /// The stored title.
    pub title: String,
}

/// The answer of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteList {
    /// Every stored note, oldest first.
    pub notes: Vec<SavedNote>,
}

/// The storage key of note `id`.
pub fn note_key(id: u64) -> String {
    format!("note:{id:06}")
}

/// The notes plugin; everything it keeps is in storage.
#[derive(Debug, Default)]
pub struct Notes;

impl Notes {
    fn next_id(ctx: &Context) -> PluginResult<u64> {
        Ok(ctx.storage().get::<u64>(NEXT_ID_KEY)?.unwrap_or(1))
    }

    fn save(&mut self, ctx: &Context, note: Note) -> PluginResult<Saved> {
        let note: Note = ctx.run_hook(BEFORE_SAVE, &note)?;
        let id = Self::next_id(ctx)?;
        let following = id
            .checked_add(1)
            .ok_or_else(|| PluginError::failed("note ids are exhausted"))?;
        // The note first: should the id write fail, the next save reuses the id and overwrites
        // the orphan instead of leaving a gap that points nowhere.
        ctx.storage().set(&note_key(id), &note)?;
        ctx.storage().set(NEXT_ID_KEY, &following)?;
        let saved = Saved {
            id,
            title: note.title.clone(),
        };
        ctx.emit(SAVED_EVENT, &saved)?;
        let stored = SavedNote {
            id,
            title: note.title,
            body: note.body,
        };
        // The note is stored whatever `after:save` says: its failure is logged, not returned.
        if let Err(e) = ctx.run_hook(AFTER_SAVE, &stored) {
            log::warn!("note {id} saved, but hook {AFTER_SAVE} failed: {e}");
        }
        Ok(saved)
    }

    fn list(&mut self, ctx: &Context, _: NoArgs) -> PluginResult<NoteList> {
        let next = Self::next_id(ctx)?;
        let mut notes = Vec::new();
        for id in 1..next {
            if let Some(Note { title, body }) = ctx.storage().get::<Note>(&note_key(id))? {
                notes.push(SavedNote { id, title, body });
            }
        }
        Ok(NoteList { notes })
    }
}

impl Plugin for Notes {
    fn manifest() -> Manifest {
        Manifest::new("notes")
            .depends_on("validator", "^0.1")
            .emits(SAVED_EVENT)
            .runs_hook(BEFORE_SAVE)
            .runs_hook(AFTER_SAVE)
    }

    fn register(api: &mut Registrar<Self>) {
        api.command(
            "save",
            r#"saves {"title", "body"} through the save hooks"#,
            Self::save,
        )
        .command("list", "lists every stored note", Self::list);
    }
}

export_plugin!(Notes);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_zero_padded_and_sort_by_id() {
        assert_eq!(note_key(1), "note:000001");
        assert_eq!(note_key(999_999), "note:999999");
        assert!(note_key(9) < note_key(10));
        assert_eq!(note_key(1_234_567), "note:1234567");
    }

    #[test]
    fn notes_read_back_from_json_and_bincode() -> PluginResult<()> {
        let note: Note = Payload::from_json_str(r#"{"title":"t","body":"b"}"#)?.decode()?;
        assert_eq!(Payload::encode(&note)?.decode::<Note>()?, note);
        let saved = Payload::json(&Saved {
            id: 3,
            title: "t".into(),
        })?;
        assert_eq!(saved.to_json_string()?, r#"{"id":3,"title":"t"}"#);
        Ok(())
    }

    #[test]
    fn manifest_declares_hooks_event_and_dependency() {
        let m = plugin_api::manifest_of::<Notes>();
        assert_eq!(m.dependencies[0].name, "validator");
        assert!(m.hooks.is_empty(), "notes runs hooks but handles none");
        let caps = m.declared_capabilities();
        for cap in [
            "emit:document:saved",
            "hook:run:before:save",
            "hook:run:after:save",
        ] {
            assert!(caps.contains(&cap.to_owned()), "{cap}");
        }
    }
}
