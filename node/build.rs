//! Records the git commit the binary is built from, for `phalanx --version`,
//! `/status` and the `phalanx_build_info` metric. Outside a git checkout (a
//! source tarball) the commit is "unknown"; `PHALANX_GIT_COMMIT` overrides it.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PHALANX_GIT_COMMIT");
    let commit = std::env::var("PHALANX_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=PHALANX_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves (a commit, a checkout) so the commit stays true.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/refs/heads");
        println!("cargo:rerun-if-changed={git_dir}/packed-refs");
    }
}

fn git_commit() -> Option<String> {
    git(&["rev-parse", "--short=12", "HEAD"])
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}
