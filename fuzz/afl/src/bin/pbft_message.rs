//! AFL++ target `pbft-message`: phalanx-fuzz's `pbft-message` target.
//!
//! Under afl-fuzz it runs in persistent mode; outside AFL it reads one
//! input from stdin, so `pbft-message < CRASH_FILE` replays a finding.

fn main() {
    let run = phalanx_fuzz_afl::target("pbft-message").run;
    afl::fuzz!(|data: &[u8]| {
        run(data);
    });
}
