//! AFL++ target `sync-blocks`: phalanx-fuzz's `sync-blocks` target.
//!
//! Under afl-fuzz it runs in persistent mode; outside AFL it reads one
//! input from stdin, so `sync-blocks < CRASH_FILE` replays a finding.

fn main() {
    let run = phalanx_fuzz_afl::target("sync-blocks").run;
    afl::fuzz!(|data: &[u8]| {
        run(data);
    });
}
