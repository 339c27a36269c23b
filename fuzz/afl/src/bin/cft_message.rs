//! AFL++ target `cft-message`: see `phalanx_fuzz_afl::cft_message`.
//!
//! Under afl-fuzz it runs in persistent mode; outside AFL it reads one
//! input from stdin, so `cft-message < CRASH_FILE` replays a finding.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        phalanx_fuzz_afl::cft_message(data);
    });
}
