//! How the records here read in JSON: a value the host does not know, or that does not apply,
//! is `null`, never a made-up `""` or `0` (the Rust fields keep those for cheapness).

use serde::Serializer;

/// `""` as `null`, any other string as itself.
pub(crate) fn empty_as_null<S: Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    if text.is_empty() {
        serializer.serialize_none()
    } else {
        serializer.serialize_some(text)
    }
}

/// `0` as `null`, any other number as itself.
pub(crate) fn zero_as_null<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        0 => serializer.serialize_none(),
        n => serializer.serialize_some(n),
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize)]
    struct Row<'a> {
        #[serde(serialize_with = "super::empty_as_null")]
        name: &'a str,
        #[serde(serialize_with = "super::zero_as_null")]
        us: u64,
    }

    #[test]
    fn unknown_values_are_null() {
        let json = |name, us| serde_json::to_string(&Row { name, us }).expect("json");
        assert_eq!(json("", 0), r#"{"name":null,"us":null}"#);
        assert_eq!(json("host", 7), r#"{"name":"host","us":7}"#);
    }
}
