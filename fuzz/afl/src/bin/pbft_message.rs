//! AFL++ target `pbft-message`: see `phalanx_fuzz_afl::pbft_message`.
//!
//! Under afl-fuzz it runs in persistent mode; outside AFL it reads one
//! input from stdin, so `pbft-message < CRASH_FILE` replays a finding.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        phalanx_fuzz_afl::pbft_message(data);
    });
}
