//! AFL++ target `http-batch`: see `phalanx_fuzz_afl::http_batch`.
//!
//! Under afl-fuzz it runs in persistent mode; outside AFL it reads one
//! input from stdin, so `http-batch < CRASH_FILE` replays a finding.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        phalanx_fuzz_afl::http_batch(data);
    });
}
