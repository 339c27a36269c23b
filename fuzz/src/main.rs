//! `phalanx-fuzz`: runs the decoders of `phalanx_fuzz::TARGETS` over
//! mutated inputs (see the library's note). `scripts/fuzz.sh` runs every
//! target a million times; CI runs a short pass as a test.

#![forbid(unsafe_code)]

use phalanx_fuzz::{fuzz, peak_resident, target, MAX_RESIDENT, TARGETS};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: phalanx-fuzz [--target NAME|all] [--inputs N] [--seed S]
targets:";

fn main() -> ExitCode {
    let mut name = "all".to_owned();
    let mut inputs: u64 = 1_000_000;
    let mut seed: u64 = 1;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next();
        let parsed = match (a.as_str(), value) {
            ("--target", Some(v)) => {
                name = v;
                true
            }
            ("--inputs", Some(v)) => v.parse().map(|n| inputs = n).is_ok(),
            ("--seed", Some(v)) => v.parse().map(|s| seed = s).is_ok(),
            _ => false,
        };
        if !parsed {
            eprintln!("{USAGE}");
            for t in TARGETS {
                eprintln!("  {:<14} {}", t.name, t.about);
            }
            return ExitCode::from(2);
        }
    }
    let chosen: Vec<_> = if name == "all" {
        TARGETS.iter().collect()
    } else {
        match target(&name) {
            Some(t) => vec![t],
            None => {
                eprintln!("unknown target {name:?}; `phalanx-fuzz --help` lists them");
                return ExitCode::from(2);
            }
        }
    };
    // A panic is reported once per target, not printed for every input.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    for t in chosen {
        let started = Instant::now();
        let report = fuzz(t, inputs, seed, |_, _| {});
        let peak = peak_resident().unwrap_or(0);
        let ok = report.panics == 0 && peak <= MAX_RESIDENT;
        failed |= !ok;
        println!(
            "{:<14} {:>9} inputs  {:>8} accepted  {:>3} panics  peak {:>4} MiB  {:>6.1} s  {}",
            t.name,
            report.inputs,
            report.accepted,
            report.panics,
            peak >> 20,
            started.elapsed().as_secs_f64(),
            if ok { "ok" } else { "FAILED" }
        );
        if let Some(input) = report.first_panic {
            println!("  first panicking input (hex): {input}");
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
