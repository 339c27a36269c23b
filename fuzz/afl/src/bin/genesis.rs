//! AFL++ target `genesis`: phalanx-fuzz's `genesis` target.
//!
//! Under afl-fuzz it runs in persistent mode; outside AFL it reads one
//! input from stdin, so `genesis < CRASH_FILE` replays a finding.

fn main() {
    let run = phalanx_fuzz_afl::target("genesis").run;
    afl::fuzz!(|data: &[u8]| {
        run(data);
    });
}
