//! AFL++ target `cft-message`: phalanx-fuzz's `cft-message` target.
//!
//! Under afl-fuzz it runs in persistent mode; outside AFL it reads one
//! input from stdin, so `cft-message < CRASH_FILE` replays a finding.

fn main() {
    let run = phalanx_fuzz_afl::target("cft-message").run;
    afl::fuzz!(|data: &[u8]| {
        run(data);
    });
}
