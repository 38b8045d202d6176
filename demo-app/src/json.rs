//! JSON output that keeps plugins' replies as they wrote them.

use plugin_api::{ErrorKind, Payload};
use serde::{Serialize, Serializer};

use crate::error::AppError;

/// A JSON document received from a plugin, kept as text.
///
/// It serializes by transcoding the text token by token, so it can sit inside other output
/// (the `emit --collect` array) and be printed compact or pretty while keeping its keys in the
/// plugin's order; a round trip through `serde_json::Value` would sort them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson(String);

impl RawJson {
    /// Wraps `text` after checking that it is one JSON document.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] with serde_json's message when it is not.
    pub fn parse(text: String) -> Result<Self, AppError> {
        serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|e| {
            AppError::failed(ErrorKind::Codec, format!("reply is not valid json: {e}"))
        })?;
        Ok(RawJson(text))
    }

    /// The JSON text of a plugin's reply (an empty reply reads as `null`).
    ///
    /// # Errors
    /// The reply is bincode (it has no schema to show it by) or not valid JSON.
    pub fn from_payload(payload: &Payload) -> Result<Self, AppError> {
        RawJson::parse(payload.to_json_string()?)
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut de = serde_json::Deserializer::from_str(&self.0);
        serde_transcode::transcode(&mut de, serializer)
    }
}

/// `value` as JSON text: compact on one line, or indented when `pretty`.
///
/// # Errors
/// Only if a [`RawJson`] inside turns out not to be JSON, which [`RawJson::parse`] rules out.
pub fn to_text<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Result<String, AppError> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    text.map_err(|e| AppError::failed(ErrorKind::Codec, format!("cannot write json: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_reformats() {
        let raw = RawJson::parse("{ \"b\": 1,\n \"a\": [1, 2] }".to_owned()).expect("json");
        assert_eq!(to_text(&raw, false).expect("text"), r#"{"b":1,"a":[1,2]}"#);
        assert!(to_text(&raw, true).expect("text").contains("\n  \"b\": 1"));
    }

    #[test]
    fn nests_inside_other_values() {
        let raw = RawJson::parse(r#"{"z":0,"y":1}"#.to_owned()).expect("json");
        let outer = serde_json::json!({ "plugin": "p" });
        #[derive(Serialize)]
        struct Row<'a> {
            plugin: &'a serde_json::Value,
            ok: Option<RawJson>,
        }
        let row = Row {
            plugin: &outer["plugin"],
            ok: Some(raw),
        };
        assert_eq!(
            to_text(&row, false).expect("text"),
            r#"{"plugin":"p","ok":{"z":0,"y":1}}"#
        );
    }

    #[test]
    fn refuses_non_json() {
        assert!(RawJson::parse("{".to_owned()).is_err());
    }
}
