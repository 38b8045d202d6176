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
//! raw crossbeam fan-out the bench compares with); `fanout-abc N`: N rounds of three batches,
//! recorder on, recorder off and raw, in rotating order after the suite's 1 ms pause, with the
//! median of each (an A/B of the recorder's cost that sees the same machine noise on every
//! side; wall time, so not for callgrind); `command N`: N command round trips;
//! `load N` (`load-raw N`): N loads of one plugin into a running host (raw abi_stable loads);
//! `load-ab N`: N of each, alternated, with each side's quartiles (wall time, as `fanout-abc`).
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
        "fanout-abc" => fanout_abc(&env, n)?,
        "load-ab" => load_ab(&env, n)?,
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
                "unknown probe {other:?}: fanout, fanout-raw, fanout-abc, load, load-raw, load-ab or command"
            )
            .into())
        }
    }
    Ok(())
}

/// `fanout-abc`: recorder on, recorder off and raw batches in rotating order; prints each
/// side's median batch and the two ratios the suite would report.
fn fanout_abc(env: &BenchEnv, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    use std::time::Duration;
    const ORDERS: [[usize; 3]; 6] = [
        [0, 1, 2],
        [1, 2, 0],
        [2, 0, 1],
        [0, 2, 1],
        [2, 1, 0],
        [1, 0, 2],
    ];
    let bench = FanoutBench::new(env, 4, 1000, 0)?;
    let mut took: [Vec<Duration>; 3] = Default::default();
    for round in 0..n.max(1) {
        for &side in &ORDERS[round % ORDERS.len()] {
            std::thread::sleep(Duration::from_millis(1));
            let batch = match side {
                2 => bench.baseline()?,
                on => {
                    bench.host().set_recording(on == 0);
                    bench.ours()?
                }
            };
            took[side].push(batch);
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64()
    };
    let [on, off, raw] = took.each_mut().map(median);
    println!(
        "{n} rounds, median batch: recorder on {:.0} µs, off {:.0} µs, raw {:.0} µs; ratio on {:.3}, off {:.3}",
        on * 1e6,
        off * 1e6,
        raw * 1e6,
        raw / on,
        raw / off
    );
    Ok(())
}

/// `load-ab`: loads into a running host and raw loads, alternated; prints each side's
/// quartiles and the ratio of the medians the suite's `load_one` reports.
fn load_ab(env: &BenchEnv, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let bench = LoadBench::new(env, 1)?;
    let mut ours = Vec::with_capacity(n);
    let mut raw = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        ours.push(bench.ours()?.as_secs_f64() * 1e6);
        raw.push(bench.raw()?.as_secs_f64() * 1e6);
    }
    let quartiles = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        [v[v.len() / 4], v[v.len() / 2], v[v.len() * 3 / 4]]
    };
    let [o1, o2, o3] = quartiles(&mut ours);
    let [r1, r2, r3] = quartiles(&mut raw);
    println!(
        "{n} loads each, quartiles: ours {o1:.0} {o2:.0} {o3:.0} µs, raw {r1:.0} {r2:.0} {r3:.0} µs; ratio {:.3}",
        o2 / r2
    );
    Ok(())
}
