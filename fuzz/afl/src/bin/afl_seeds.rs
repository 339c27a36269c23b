//! `afl-seeds DIR`: writes each target's seed corpus to DIR/TARGET/ and
//! checks that every seed is accepted by its target.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: afl-seeds DIR");
        return ExitCode::from(2);
    };
    for name in phalanx_fuzz_afl::TARGETS {
        let target = phalanx_fuzz_afl::target(name);
        let (run, seeds) = (target.run, (target.seeds)());
        let out = dir.join(name);
        std::fs::create_dir_all(&out).expect("create the seed directory");
        for (i, seed) in seeds.iter().enumerate() {
            if !run(seed) {
                eprintln!("seed {i} of {name} is refused by its own decoder");
                return ExitCode::FAILURE;
            }
            std::fs::write(out.join(format!("seed-{i:02}")), seed).expect("write a seed");
        }
        println!("{name:<14} {} seeds in {}", seeds.len(), out.display());
    }
    ExitCode::SUCCESS
}
