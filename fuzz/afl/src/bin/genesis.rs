//! AFL++ target `genesis`: see `phalanx_fuzz_afl::genesis`.
//!
//! Under afl-fuzz it runs in persistent mode; outside AFL it reads one
//! input from stdin, so `genesis < CRASH_FILE` replays a finding.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        phalanx_fuzz_afl::genesis(data);
    });
}
