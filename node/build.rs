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
    // Rebuild when HEAD moves (a commit, a checkout) so the commit stays
    // true. In a worktree HEAD is in the worktree's git dir and the refs in
    // the common one; a path that does not exist would make cargo rerun this
    // script on every build, so only existing ones are watched.
    let head = git(&["rev-parse", "--path-format=absolute", "--git-path", "HEAD"]);
    let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]);
    let mut watched: Vec<String> = head.into_iter().collect();
    if let Some(common) = common {
        watched.push(format!("{common}/refs/heads"));
        watched.push(format!("{common}/packed-refs"));
    }
    for path in watched {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
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
