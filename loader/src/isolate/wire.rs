//! What travels between the host and an isolated plugin's process: length-prefixed bincode
//! frames over the child's stdin (host to child) and stdout (child to host).
//!
//! A frame is a 4-byte little-endian length followed by that many bytes of bincode (serde,
//! standard configuration). The first frame each way is a [`Hello`]; a side that finds the
//! other's versions different from its own says so and stops. Then the host sends one
//! [`ToChild::Start`], the child answers [`ToHost::Ready`] or [`ToHost::Failed`], and from then
//! on the host sends calls and the child answers them, asking the host for what the plugin's
//! context does ([`HostRequest`]) in between.

use std::{
    cell::RefCell,
    io::{self, BufRead, BufReader, Read, Write},
    path::PathBuf,
    sync::Arc,
};

use plugin_api::{Event, Payload, PluginError, StorageScope};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::runtime::call::{Answer, Call};

/// The version of this protocol; both sides must speak the same.
pub(crate) const PROTOCOL: u32 = 2;

/// The first frame each side sends: what it speaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL`] of the sender.
    pub protocol: u32,
    /// The plugin-api version the sender was built with.
    pub plugin_api: String,
    /// The loader (host) version the sender was built with.
    pub host: String,
}

impl Hello {
    /// What this build speaks.
    pub fn ours() -> Hello {
        Hello {
            protocol: PROTOCOL,
            plugin_api: plugin_api::API_VERSION.to_owned(),
            host: crate::HOST_VERSION.to_owned(),
        }
    }
}

impl std::fmt::Display for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "protocol {}, plugin-api {}, host {}",
            self.protocol, self.plugin_api, self.host
        )
    }
}

/// What the child needs to load and start the plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Start {
    /// The plugin's name, as the host's load found it.
    pub plugin: String,
    /// The plugin file (the child makes its own checked copy of it).
    pub file: PathBuf,
    /// What the host's load found in the file: the child refuses other bytes.
    pub fingerprint: String,
    /// The plugin's configuration table, as `Context::config` returns it.
    pub config: Payload,
    /// The host's maximum log level (`log::LevelFilter as u8`).
    pub log_level: u8,
    /// Address-space limit of the child, in MiB.
    pub memory_limit_mb: Option<u64>,
    /// How long the plugin's `manifest()` may take in the child, in milliseconds.
    pub manifest_deadline_ms: u64,
}

/// Frames from the host to the child.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToChild {
    /// Load the plugin and make an instance.
    Start(Box<Start>),
    /// Run a call on the instance (one at a time), stamped with who made it and its id
    /// (`None` for lifecycle calls), which the plugin's `Context::caller` returns.
    Call {
        call: Call,
        stamp: Option<(String, u64)>,
    },
    /// Deliver these events to the instance, in order, each answered as a call: a run of
    /// queued events written in one frame. Each is stamped with its source and its own id.
    /// Should one of them panic, the rest of the run is answered without running (the host
    /// gives them to the instance that replaces this one).
    Events(Vec<Arc<Event>>),
    /// The caller of call `id` stopped waiting, or the plugin is being deactivated: the
    /// handler's `Context::is_cancelled` turns true.
    Cancel { id: u64 },
    /// The answer to the child's request `id`.
    Reply {
        id: u64,
        reply: Result<HostReply, PluginError>,
    },
}

/// Frames from the child to the host.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToHost {
    /// The plugin is loaded and has an instance.
    Ready,
    /// It could not be loaded or instantiated: why.
    Failed(String),
    /// The answer to the last call.
    Answer(Result<Answer, PluginError>),
    /// A context call of the plugin. `in_call` says that the thread running the host's current
    /// call made it (so the host serves it on the calling thread, with that call's callers);
    /// `id` 0 asks for no reply.
    Request {
        id: u64,
        in_call: bool,
        request: HostRequest,
    },
}

/// A `Context` call of the plugin, one variant per method of the host context that reaches
/// the host (the name and the configuration are known to the child).
#[derive(Debug, Serialize, Deserialize)]
#[allow(
    missing_docs,
    reason = "each variant is the context method of the same name"
)]
pub(crate) enum HostRequest {
    Emit {
        event_type: String,
        data: Payload,
    },
    EmitAndCollect {
        event_type: String,
        data: Payload,
        timeout_ms: u64,
    },
    Subscribe(String),
    Unsubscribe(String),
    Execute {
        command: String,
        args: Payload,
        timeout_ms: u64,
    },
    SendTo {
        plugin: String,
        message: Payload,
    },
    Request {
        plugin: String,
        message: Payload,
        timeout_ms: u64,
    },
    Call {
        plugin: String,
        method: String,
        args: Payload,
        timeout_ms: u64,
    },
    RunHook {
        name: String,
        data: Payload,
    },
    ProviderCall {
        provider: String,
        method: String,
        args: Payload,
        timeout_ms: u64,
    },
    StorageGet {
        scope: Scope,
        key: String,
    },
    StorageSet {
        scope: Scope,
        key: String,
        value: Payload,
    },
    StorageDelete {
        scope: Scope,
        key: String,
    },
    StorageScan {
        scope: Scope,
        start: String,
        end: String,
        limit: u32,
    },
    StorageBatch {
        scope: Scope,
        /// `Some(value)` writes, `None` deletes.
        ops: Vec<(String, Option<Payload>)>,
    },
    Log {
        level: u8,
        message: String,
    },
    /// A [`plugin_api::RegistrationDecl`] as JSON (plugin-api 1.1).
    Register(String),
    /// A registration's id (plugin-api 1.1).
    Unregister(u64),
    StartTimer {
        name: String,
        delay_ms: u64,
        repeat: bool,
    },
    /// Asks for no reply.
    StopTimer(u64),
}

/// [`StorageScope`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Scope {
    /// The plugin's own namespace.
    Plugin,
    /// The shared namespace.
    Shared,
}

impl From<StorageScope> for Scope {
    fn from(scope: StorageScope) -> Scope {
        match scope {
            StorageScope::Plugin => Scope::Plugin,
            StorageScope::Shared => Scope::Shared,
        }
    }
}

impl From<Scope> for StorageScope {
    fn from(scope: Scope) -> StorageScope {
        match scope {
            Scope::Plugin => StorageScope::Plugin,
            Scope::Shared => StorageScope::Shared,
        }
    }
}

/// The host's answer to a [`HostRequest`], by the shape of the context method's result.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum HostReply {
    /// `()`.
    Unit,
    /// An event id.
    Id(u64),
    /// `true`/`false` (`storage_delete`).
    Bool(bool),
    /// A payload.
    Payload(Payload),
    /// A payload or nothing (`storage_get`).
    Maybe(Option<Payload>),
    /// What `emit_and_collect` gathered: (plugin, result).
    Collected(Vec<(String, Result<Payload, PluginError>)>),
    /// What `storage_scan` found: (key, value).
    Entries(Vec<(String, Payload)>),
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The pipe failed or ended inside a frame.
    #[error("cannot read a frame: {0}")]
    Io(#[from] io::Error),
    /// The length is over the limit.
    #[error("a frame of {len} bytes is over the limit of {limit} bytes")]
    TooLong { len: usize, limit: usize },
    /// The bytes are not a frame of the expected kind.
    #[error("a frame does not decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` as one frame (length prefix included).
///
/// # Errors
/// The value cannot be encoded (it holds something serde cannot write).
pub(crate) fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4];
    bincode::serde::encode_into_std_write(value, &mut buf, config())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let len = u32::try_from(buf.len() - 4)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame over 4 GiB"))?;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    Ok(buf)
}

/// Encodes `value` as one frame into this thread's reused buffer and hands the bytes to
/// `write`: no allocation per frame once the buffer has grown to the frames' size.
///
/// # Errors
/// The value cannot be encoded, or `write` failed.
pub(crate) fn with_frame<T: Serialize, R>(
    value: &T,
    write: impl FnOnce(&[u8]) -> io::Result<R>,
) -> io::Result<R> {
    /// A buffer larger than this is not kept for the next frame.
    const KEEP: usize = 1 << 20;
    thread_local! {
        static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    BUFFER.with(|buffer| {
        let Ok(mut buf) = buffer.try_borrow_mut() else {
            // Only a `write` that sends another frame gets here; it gets a buffer of its own.
            return write(&encode(value)?);
        };
        buf.clear();
        buf.extend_from_slice(&[0; 4]);
        let framed = bincode::serde::encode_into_std_write(value, &mut *buf, config())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
            .and_then(|_| {
                u32::try_from(buf.len() - 4)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame over 4 GiB"))
            });
        let result = framed.and_then(|len| {
            buf[..4].copy_from_slice(&len.to_le_bytes());
            write(&buf)
        });
        if buf.capacity() > KEEP {
            *buf = Vec::new();
        }
        result
    })
}

/// Reads one frame like [`read_frame`], decoding it in place when the reader's buffer holds it
/// whole (the usual case: a frame is written in one piece, and small ones arrive together),
/// without copying it out first.
///
/// # Errors
/// As [`read_frame`].
pub(crate) fn read_buffered<R: Read, T: DeserializeOwned>(
    input: &mut BufReader<R>,
    limit: usize,
) -> Result<Option<T>, FrameError> {
    if input.buffer().is_empty() {
        loop {
            match input.fill_buf() {
                Ok([]) => return Ok(None),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let held = input.buffer();
    if let Some(prefix) = held.get(..4) {
        let mut len = [0u8; 4];
        len.copy_from_slice(prefix);
        let len = u32::from_le_bytes(len) as usize;
        if len > limit {
            return Err(FrameError::TooLong { len, limit });
        }
        if let Some(body) = held.get(4..4 + len) {
            let decoded = bincode::serde::decode_from_slice(body, config());
            input.consume(4 + len);
            return Ok(Some(decoded?.0));
        }
    }
    read_frame(input, limit)
}

/// Writes `value` as one frame and flushes.
///
/// # Errors
/// The value cannot be encoded or the pipe is closed.
pub(crate) fn write_frame<W: Write, T: Serialize>(out: &mut W, value: &T) -> io::Result<()> {
    out.write_all(&encode(value)?)?;
    out.flush()
}

/// Reads one frame of at most `limit` bytes; `Ok(None)` when the pipe ended cleanly between
/// frames.
///
/// # Errors
/// [`FrameError`]: the pipe failed or ended inside a frame, the length is over `limit`, or the
/// bytes do not decode as a `T`.
pub(crate) fn read_frame<R: Read, T: DeserializeOwned>(
    input: &mut R,
    limit: usize,
) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > limit {
        return Err(FrameError::TooLong { len, limit });
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body)?;
    let (value, _) = bincode::serde::decode_from_slice(&body, config())?;
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut pipe = Vec::new();
        write_frame(&mut pipe, &Hello::ours()).expect("write");
        let request = ToHost::Request {
            id: 7,
            in_call: true,
            request: HostRequest::Emit {
                event_type: "a:b".into(),
                data: Payload::empty(),
            },
        };
        write_frame(&mut pipe, &request).expect("write");
        let mut input = pipe.as_slice();
        let hello: Hello = read_frame(&mut input, 1024)
            .expect("read")
            .expect("a frame");
        assert_eq!(hello, Hello::ours());
        let back: ToHost = read_frame(&mut input, 1024)
            .expect("read")
            .expect("a frame");
        assert!(matches!(
            back,
            ToHost::Request {
                id: 7,
                in_call: true,
                ..
            }
        ));
        assert!(read_frame::<_, ToHost>(&mut input, 1024)
            .expect("clean end")
            .is_none());
    }

    #[test]
    fn buffered_frames_decode_in_place_and_across_reads() {
        let mut pipe = Vec::new();
        for id in 0..3 {
            with_frame(&ToChild::Cancel { id }, |bytes| {
                pipe.extend_from_slice(bytes);
                Ok(())
            })
            .expect("encode");
        }
        // A buffer of 5 bytes holds no frame whole: every read takes the slow path too.
        for capacity in [5, 8192] {
            let mut input = BufReader::with_capacity(capacity, pipe.as_slice());
            for id in 0..3 {
                let frame: ToChild = read_buffered(&mut input, 1024)
                    .expect("read")
                    .expect("a frame");
                assert!(matches!(frame, ToChild::Cancel { id: got } if got == id));
            }
            assert!(read_buffered::<_, ToChild>(&mut input, 1024)
                .expect("clean end")
                .is_none());
        }
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut pipe = Vec::new();
        write_frame(&mut pipe, &Hello::ours()).expect("write");
        assert!(matches!(
            read_frame::<_, Hello>(&mut pipe.as_slice(), 3),
            Err(FrameError::TooLong { .. })
        ));
        let garbage = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame::<_, ToHost>(&mut garbage.as_slice(), 1024),
            Err(FrameError::Decode(_))
        ));
        let cut = [9u8, 0, 0, 0, 1];
        assert!(matches!(
            read_frame::<_, ToHost>(&mut cut.as_slice(), 1024),
            Err(FrameError::Io(_))
        ));
    }
}
