//! AFL++ target `sync-blocks`: see `phalanx_fuzz_afl::sync_blocks`.
//!
//! Under afl-fuzz it runs in persistent mode; outside AFL it reads one
//! input from stdin, so `sync-blocks < CRASH_FILE` replays a finding.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        phalanx_fuzz_afl::sync_blocks(data);
    });
}
