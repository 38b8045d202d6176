//! A fixed amount of work for `valgrind --tool=callgrind`, whose instruction counts do not
//! depend on how loaded the machine is (BENCHMARKS.md reads them per delivery and per call):
//!
//! ```text
//! cargo build --release -p loader-bench --example probe
//! valgrind --tool=callgrind target/release/examples/probe fanout 20
//! valgrind --tool=callgrind target/release/examples/probe command 20000
//! ```
//!
//! `fanout N`: N batches of 1000 events to 4 subscribers (`fanout-raw N`: the same through the
//! raw crossbeam fan-out the bench compares with); `command N`: N command round trips;
//! `load N` (`load-raw N`): N loads of one plugin into a running host (raw abi_stable loads).
//! Add `off` to run with the flight recorder off.

use std::process::ExitCode;

use loader_bench::{BenchEnv, CommandBench, FanoutBench, LoadBench};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("fanout");
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let recording = !args.iter().any(|a| a == "off");
    match run(what, n, recording) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(what: &str, n: usize, recording: bool) -> Result<(), Box<dyn std::error::Error>> {
    let env = BenchEnv::beside_executable()?;
    match what {
        "fanout" | "fanout-after-fleet" => {
            if what == "fanout-after-fleet" {
                // What the suite's memory_per_plugin case leaves behind: 100 more images.
                let fleet = LoadBench::new(&env, 100)?;
                fleet.ours()?;
            }
            let bench = FanoutBench::new(&env, 4, 1000, 0)?;
            bench.host().set_recording(recording);
            let started = std::time::Instant::now();
            for _ in 0..n {
                bench.ours()?;
            }
            println!(
                "{n} batches of {} events to 4 subscribers in {:?}",
                bench.events(),
                started.elapsed()
            );
        }
        "fanout-raw" => {
            let bench = FanoutBench::new(&env, 4, 1000, 0)?;
            for _ in 0..n {
                bench.baseline()?;
            }
            println!("{n} raw batches of {} events to 4 threads", bench.events());
        }
        "load" | "load-raw" => {
            let bench = LoadBench::new(&env, 1)?;
            for _ in 0..n {
                if what == "load" {
                    bench.ours()?;
                } else {
                    bench.raw()?;
                }
            }
            println!("{n} loads of one plugin ({what})");
        }
        "command" => {
            let bench = CommandBench::new(&env, 0)?;
            bench.host().set_recording(recording);
            for _ in 0..n {
                bench.ours()?;
            }
            println!("{n} command round trips");
        }
        other => {
            return Err(format!(
                "unknown probe {other:?}: fanout, fanout-raw, load, load-raw or command"
            )
            .into())
        }
    }
    Ok(())
}
