//! AFL++ target `http-batch`: phalanx-fuzz's `http-batch` target.
//!
//! Under afl-fuzz it runs in persistent mode; outside AFL it reads one
//! input from stdin, so `http-batch < CRASH_FILE` replays a finding.

fn main() {
    let run = phalanx_fuzz_afl::target("http-batch").run;
    afl::fuzz!(|data: &[u8]| {
        run(data);
    });
}
