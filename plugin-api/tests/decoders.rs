//! Property tests over the decoders that read plugin-supplied bytes: payload decoding and
//! manifest reading. No input may panic, hang or allocate without bound.

use plugin_api::{Codec, Manifest, Payload};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sample {
    name: String,
    count: u64,
    tags: Vec<String>,
    nested: Option<Box<Sample>>,
}

fn payload(codec: Codec, bytes: Vec<u8>) -> Payload {
    Payload {
        codec,
        bytes: bytes.into(),
    }
}

fn any_codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::Empty), Just(Codec::Bincode), Just(Codec::Json)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_in_any_codec(codec in any_codec(), bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let p = payload(codec, bytes);
        let _ = p.decode::<Sample>();
        let _ = p.decode::<String>();
        let _ = p.decode::<Vec<u64>>();
        let _ = p.decode::<serde_json::Value>();
        let _ = p.to_json_string();
    }

    #[test]
    fn huge_length_prefixes_are_refused_without_allocating(len in (1u64 << 40)..u64::MAX) {
        // A bincode varint length claiming terabytes must fail cleanly, not try to allocate.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&len.to_le_bytes());
        let p = payload(Codec::Bincode, bytes);
        prop_assert!(p.decode::<Vec<u8>>().is_err());
        prop_assert!(p.decode::<String>().is_err());
    }

    #[test]
    fn typed_values_round_trip_through_both_codecs(name in ".{0,40}", count in any::<u64>(), tags in proptest::collection::vec(".{0,8}", 0..4)) {
        let value = Sample { name, count, tags, nested: None };
        for codec in [Codec::Bincode, Codec::Json] {
            let p = Payload::encode_as(codec, &value).unwrap();
            prop_assert_eq!(p.decode::<Sample>().unwrap(), value.clone());
            // And the answer comes back in the caller's codec.
            prop_assert_eq!(p.reply_with(&value).unwrap().codec, codec);
        }
    }

    #[test]
    fn truncated_bincode_is_an_error(name in ".{1,40}", cut in 0usize..64) {
        let full = Payload::encode(&Sample { name, count: 7, tags: vec![], nested: None }).unwrap();
        let keep = cut.min(full.len().saturating_sub(1));
        let p = payload(Codec::Bincode, full.bytes[..keep].to_vec());
        prop_assert!(p.decode::<Sample>().is_err());
    }

    #[test]
    fn manifest_reader_never_panics(text in ".{0,400}") {
        let _ = Manifest::from_json(&text);
    }

    #[test]
    fn manifest_json_with_arbitrary_field_values_reads_or_errors(name in ".{0,20}", version in ".{0,20}", deps in proptest::collection::vec((".{0,10}", ".{0,10}"), 0..4)) {
        let json = serde_json::json!({
            "name": name,
            "version": version,
            "dependencies": deps.iter().map(|(n, r)| serde_json::json!({"name": n, "requirement": r})).collect::<Vec<_>>(),
            "unknown_future_field": {"x": 1},
        });
        let m = Manifest::from_json(&json.to_string()).unwrap();
        prop_assert_eq!(m.name, name);
        prop_assert_eq!(m.dependencies.len(), deps.len());
    }
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let p = Payload {
        codec: Codec::Json,
        bytes: deep.into_bytes().into(),
    };
    assert!(p.decode::<serde_json::Value>().is_err());
}

#[test]
fn trailing_bytes_after_a_bincode_value_are_refused() {
    let mut p = Payload::encode(&5u32).unwrap();
    p.bytes.push(0);
    let err = p.decode::<u32>().unwrap_err();
    assert!(err.message().contains("trailing"), "{err}");
}
