//! `emit`: publish an event from the host, optionally waiting for every subscriber's answer.

use loader::Host;
use serde::Serialize;

use super::parse_json;
use crate::{error::AppError, json::RawJson};

/// What `emit` prints: the event id, or every subscriber's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum EmitOutcome {
    /// `{"id": N}`
    Sent {
        /// The event id.
        id: u64,
    },
    /// `[{"plugin", "ok", "error"}, ...]`
    Collected(Vec<CollectedRow>),
}

/// One subscriber's answer to `emit --collect`.
#[derive(Debug, Clone, Serialize)]
pub struct CollectedRow {
    /// The subscriber.
    pub plugin: String,
    /// Its reply as JSON, when it succeeded (`null` when it returned nothing).
    pub ok: Option<RawJson>,
    /// Its error message, when it failed.
    pub error: Option<String>,
}

/// Publishes `event_type` with JSON data from the host; with `collect`, waits for every plugin
/// subscriber's answer.
///
/// # Errors
/// Malformed JSON (usage, exit 2); an empty event type or an oversized payload (exit 1).
/// Subscriber failures are not errors: they are rows of the answer.
pub fn emit(
    host: &Host,
    event_type: &str,
    data_json: &str,
    collect: bool,
) -> Result<EmitOutcome, AppError> {
    let data = parse_json(data_json)?;
    if !collect {
        return Ok(EmitOutcome::Sent {
            id: host.emit(event_type, data)?,
        });
    }
    let rows = host
        .emit_and_collect(event_type, data, None)?
        .into_iter()
        .map(|(plugin, result)| {
            let (ok, error) = match result
                .map_err(AppError::from)
                .and_then(|p| RawJson::from_payload(&p))
            {
                Ok(reply) => (Some(reply), None),
                Err(e) => (None, Some(e.to_string())),
            };
            CollectedRow { plugin, ok, error }
        })
        .collect();
    Ok(EmitOutcome::Collected(rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[test]
    fn emit_outcomes_serialize_as_documented() {
        let sent = json::to_text(&EmitOutcome::Sent { id: 7 }, false).expect("json");
        assert_eq!(sent, r#"{"id":7}"#);
        let collected = EmitOutcome::Collected(vec![CollectedRow {
            plugin: "p".to_owned(),
            ok: None,
            error: Some("boom".to_owned()),
        }]);
        assert_eq!(
            json::to_text(&collected, false).expect("json"),
            r#"[{"plugin":"p","ok":null,"error":"boom"}]"#
        );
    }
}
