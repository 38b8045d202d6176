//! Bytes that cross the boundary, tagged with the codec that wrote them.

use abi_stable::{std_types::RVec, StableAbi};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{ErrorKind, PluginError, PluginResult};

/// How the bytes of a [`Payload`] are encoded.
///
/// Rust plugins talk to each other in [`Codec::Bincode`]; the command line and other
/// JSON-speaking callers use [`Codec::Json`]. A handler decodes either into the same typed
/// struct with [`Payload::decode`] and answers in the caller's codec with
/// [`Payload::reply_with`].
#[repr(u8)]
#[derive(
    StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Codec {
    /// No data at all (a unit payload).
    Empty = 0,
    /// bincode 2 with its standard configuration, through serde.
    Bincode = 1,
    /// UTF-8 JSON.
    Json = 2,
}

impl Codec {
    /// The lower-case name of the codec, as shown in errors and traces.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Empty => "empty",
            Codec::Bincode => "bincode",
            Codec::Json => "json",
        }
    }
}

/// Encoded data with its codec tag: the unit of data exchange between host and plugins.
///
/// # Examples
///
/// ```
/// use plugin_api::Payload;
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Greet { name: String }
///
/// // The CLI sends JSON…
/// let args = Payload::from_json_str(r#"{"name":"Ada"}"#).unwrap();
/// let typed: Greet = args.decode().unwrap();
/// assert_eq!(typed.name, "Ada");
/// // …and gets its answer back as JSON, whatever the handler's types are.
/// let reply = args.reply_with(&Greet { name: "Hello, Ada!".into() }).unwrap();
/// assert_eq!(reply.to_json_string().unwrap(), r#"{"name":"Hello, Ada!"}"#);
/// ```
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payload {
    /// How `bytes` is encoded.
    pub codec: Codec,
    /// The encoded data.
    #[serde(with = "as_bytes")]
    pub bytes: RVec<u8>,
}

/// `Payload::bytes` through serde as one byte string instead of a sequence of `u8` values:
/// the same bytes in bincode (a length, then the bytes), but one copy instead of a call per
/// byte each way (measured: most of the cost of sending a 16 KiB payload to a plugin in a
/// worker process).
mod as_bytes {
    use abi_stable::std_types::RVec;
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &RVec<u8>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes.as_slice())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<RVec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(Bytes)
    }

    struct Bytes;

    impl<'de> de::Visitor<'de> for Bytes {
        type Value = RVec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<RVec<u8>, E> {
            Ok(RVec::from_slice(bytes))
        }

        fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<RVec<u8>, E> {
            Ok(RVec::from(bytes))
        }

        // Formats without byte strings (JSON) write a sequence of numbers.
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RVec<u8>, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(byte) = seq.next_element::<u8>()? {
                bytes.push(byte);
            }
            Ok(RVec::from(bytes))
        }
    }
}

/// Largest allocation a bincode payload may claim while decoding. Without a limit, a length
/// prefix in malformed bytes makes the decoder try to allocate whatever it says (and abort).
pub const MAX_DECODE_BYTES: usize = 64 * 1024 * 1024;

fn bincode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_DECODE_BYTES>,
> {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

/// The capacity an encoding's buffer starts with: one allocation for most replies.
const FIRST_CAPACITY: usize = 64;

/// The bytes of an encoding being written. bincode's own growable writer is private, and its
/// `std::io::Write` adapter counts bytes and maps an I/O error on every write.
struct Buffer<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for Buffer<'_> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

impl Default for Payload {
    fn default() -> Self {
        Payload::empty()
    }
}

impl Payload {
    /// A payload carrying no data.
    pub fn empty() -> Self {
        Payload {
            codec: Codec::Empty,
            bytes: RVec::new(),
        }
    }

    /// Whether this payload carries no data.
    pub fn is_empty(&self) -> bool {
        self.codec == Codec::Empty
    }

    /// Encodes `value` with bincode, the codec Rust plugins use between themselves.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] if serde refuses the value (for example a map with non-string keys
    /// is fine, but `serde_json::Value` is not supported by bincode).
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> PluginResult<Self> {
        // bincode's `encode_to_vec` starts from an empty buffer and reallocates three times on
        // the way to a typical 40-60 byte reply; starting at 64 bytes skips those and changes
        // the final capacity only for values under 33 bytes.
        let mut bytes = Vec::with_capacity(FIRST_CAPACITY);
        bincode::serde::encode_into_writer(value, Buffer(&mut bytes), bincode_config())
            .map_err(|e| PluginError::new(ErrorKind::Codec, format!("bincode encode: {e}")))?;
        Ok(Payload {
            codec: Codec::Bincode,
            bytes: bytes.into(),
        })
    }

    /// Encodes `value` as JSON.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] if serde_json refuses the value.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> PluginResult<Self> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| PluginError::new(ErrorKind::Codec, format!("json encode: {e}")))?;
        Ok(Payload {
            codec: Codec::Json,
            bytes: bytes.into(),
        })
    }

    /// Wraps a JSON document given as text, checking that it parses.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] naming the parse error when `text` is not JSON.
    pub fn from_json_str(text: &str) -> PluginResult<Self> {
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|e| PluginError::new(ErrorKind::Codec, format!("invalid json: {e}")))?;
        Ok(Payload {
            codec: Codec::Json,
            bytes: text.as_bytes().to_vec().into(),
        })
    }

    /// Encodes `value` in the given codec; [`Codec::Empty`] encodes nothing.
    ///
    /// # Errors
    /// As [`Payload::encode`] and [`Payload::json`].
    pub fn encode_as<T: Serialize + ?Sized>(codec: Codec, value: &T) -> PluginResult<Self> {
        match codec {
            Codec::Json => Payload::json(value),
            Codec::Bincode | Codec::Empty => Payload::encode(value),
        }
    }

    /// Decodes the payload into `T`, whichever codec wrote it.
    ///
    /// An empty payload decodes as JSON `null`, so `Option<T>` and `()` accept it.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] with the codec and serde's message when the bytes do not fit `T`
    /// (including trailing bytes after a bincode value).
    pub fn decode<T: DeserializeOwned>(&self) -> PluginResult<T> {
        match self.codec {
            Codec::Empty => serde_json::from_slice(b"null").map_err(|e| {
                PluginError::new(
                    ErrorKind::Codec,
                    format!("empty payload where data was expected: {e}"),
                )
            }),
            Codec::Json => serde_json::from_slice(&self.bytes)
                .map_err(|e| PluginError::new(ErrorKind::Codec, format!("json decode: {e}"))),
            Codec::Bincode => {
                let (value, used) =
                    bincode::serde::decode_from_slice(&self.bytes, bincode_config()).map_err(
                        |e| PluginError::new(ErrorKind::Codec, format!("bincode decode: {e}")),
                    )?;
                if used != self.bytes.len() {
                    return Err(PluginError::new(
                        ErrorKind::Codec,
                        format!(
                            "bincode decode: {} trailing bytes after the value",
                            self.bytes.len() - used
                        ),
                    ));
                }
                Ok(value)
            }
        }
    }

    /// Encodes an answer to this payload in the same codec (the caller's codec), so a JSON
    /// caller gets JSON back and a Rust plugin gets bincode.
    ///
    /// # Errors
    /// As [`Payload::encode_as`].
    pub fn reply_with<T: Serialize + ?Sized>(&self, value: &T) -> PluginResult<Payload> {
        Payload::encode_as(self.codec, value)
    }

    /// The payload as JSON text, when it is JSON (or empty, which reads as `null`).
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] for bincode payloads, which carry no schema, or for JSON bytes that
    /// are not UTF-8.
    pub fn to_json_string(&self) -> PluginResult<String> {
        match self.codec {
            Codec::Empty => Ok("null".to_owned()),
            Codec::Json => String::from_utf8(self.bytes.to_vec()).map_err(|e| {
                PluginError::new(ErrorKind::Codec, format!("json payload is not utf-8: {e}"))
            }),
            Codec::Bincode => Err(PluginError::new(
                ErrorKind::Codec,
                "a bincode payload cannot be shown as json without its type",
            )),
        }
    }

    /// Number of encoded bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_go_through_serde_as_one_byte_string_in_the_format_a_sequence_had() {
        let payload = Payload {
            codec: Codec::Bincode,
            bytes: RVec::from(vec![0u8, 1, 200, 255]),
        };
        let config = bincode::config::standard();
        let wire = bincode::serde::encode_to_vec(&payload, config).expect("encode");
        // The codec's variant index, the length, the bytes: as when the bytes were a sequence
        // of `u8` values, so that both ends of a pipe agree whichever wrote it.
        let as_sequence = bincode::serde::encode_to_vec(
            (payload.codec, payload.bytes.as_slice().to_vec()),
            config,
        )
        .expect("encode");
        assert_eq!(wire, as_sequence);
        let (back, _): (Payload, usize) =
            bincode::serde::decode_from_slice(&wire, config).expect("decode");
        assert_eq!(back, payload);
        let json = serde_json::to_string(&payload).expect("json");
        assert_eq!(
            serde_json::from_str::<Payload>(&json).expect("json back"),
            payload
        );
    }

    #[test]
    fn encoding_writes_the_bytes_bincode_writes_for_values_below_and_above_the_first_capacity() {
        let small = (7u64, "x".to_owned());
        let large: Vec<(u64, String)> = (0..500).map(|i| (i, format!("entry {i}"))).collect();
        let config = bincode::config::standard();
        let small_wire = Payload::encode(&small).expect("encode small");
        let expected = bincode::serde::encode_to_vec(&small, config).expect("bincode small");
        assert_eq!(small_wire.bytes.as_slice(), expected);
        let large_wire = Payload::encode(&large).expect("encode large");
        assert!(large_wire.bytes.len() > FIRST_CAPACITY * 10);
        let expected = bincode::serde::encode_to_vec(&large, config).expect("bincode large");
        assert_eq!(large_wire.bytes.as_slice(), expected);
        let back: Vec<(u64, String)> = large_wire.decode().expect("decode large");
        assert_eq!(back, large);
    }
}
