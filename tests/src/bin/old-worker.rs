//! A worker that speaks another protocol version, for the test that the host refuses it: as
//! the worker of an isolated plugin it sends the first frame of the worker protocol (its hello)
//! with protocol 0, then waits for the host to close its stdin. Asked to read a manifest (which
//! the host does before it starts a plugin isolated), it is the loader's own reader.
#![forbid(unsafe_code)]

use std::io::{Read, Write};

/// The hello frame's fields, in the protocol's order.
#[derive(serde::Serialize)]
struct Hello {
    protocol: u32,
    plugin_api: String,
    host: String,
}

fn main() {
    if std::env::args().nth(2).as_deref() == Some("manifest") {
        loader::worker::run_if_worker();
    }
    let hello = Hello {
        protocol: 0,
        plugin_api: plugin_api::API_VERSION.to_owned(),
        host: loader::HOST_VERSION.to_owned(),
    };
    let body = bincode::serde::encode_to_vec(&hello, bincode::config::standard())
        .expect("a hello encodes");
    let len = u32::try_from(body.len()).expect("a short frame");
    let mut out = std::io::stdout().lock();
    out.write_all(&len.to_le_bytes()).expect("write");
    out.write_all(&body).expect("write");
    out.flush().expect("flush");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
