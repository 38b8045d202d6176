//! Benchmark plugin: counts the `bench:tick` events it receives.
//!
//! Four crates (`bench-sink-a` … `bench-sink-d`) build this same file, each under its own
//! package name, so the event fan-out benchmark has four distinct subscribers. The
//! `loader-bench` module also copies `bench-sink-a` and rewrites its name to get a folder of
//! 100 distinct plugins (the name is the crate name, stored once in the library).
//!
//! | event | answer to `emit_and_collect` |
//! |---|---|
//! | `bench:tick` | none; the count goes up by one |
//! | `bench:count` | the count so far (bincode `u64`) |
//! | `bench:reset` | none; the count goes back to zero |
#![forbid(unsafe_code)]

use plugin_api::prelude::*;

/// This plugin's name: the package name of the crate that builds this file.
///
/// A `static` read through `black_box`, so the name is stored as plain bytes in the library
/// (a constant this short may be compiled into immediate stores) and `loader-bench` can find
/// and rewrite it in copies.
pub static NAME: &str = env!("CARGO_PKG_NAME");

/// Applies one event to `count`; returns the count when the event asks for it.
pub fn handle(count: &mut u64, event_type: &str) -> Option<u64> {
    match event_type {
        "bench:tick" => {
            *count += 1;
            None
        }
        "bench:count" => Some(*count),
        "bench:reset" => {
            *count = 0;
            None
        }
        _ => None,
    }
}

/// The sink; its only state is the count.
#[derive(Debug, Default)]
pub struct Sink {
    count: u64,
}

impl Plugin for Sink {
    fn manifest() -> Manifest {
        Manifest::new(std::hint::black_box(NAME)).subscribes("bench:*")
    }

    fn on_event(&mut self, _ctx: &Context, event: &Event) -> PluginResult<Option<Payload>> {
        handle(&mut self.count, event.event_type.as_str())
            .map(|count| Payload::encode(&count))
            .transpose()
    }
}

export_plugin!(Sink);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ticks_and_answers_the_count() {
        let mut count = 0;
        for _ in 0..3 {
            assert_eq!(handle(&mut count, "bench:tick"), None);
        }
        assert_eq!(handle(&mut count, "bench:other"), None);
        assert_eq!(handle(&mut count, "bench:count"), Some(3));
        assert_eq!(handle(&mut count, "bench:reset"), None);
        assert_eq!(handle(&mut count, "bench:count"), Some(0));
    }
}
