//! `scripts/ensure-deps.sh --check` against fake library folders: it must
//! decide about libclang the way clang-sys (bindgen's loader) does. LLVM's
//! `libclang-cpp.so.N` alone is not libclang — Debian's stock image has
//! exactly that, and taking it for libclang made a fresh machine's build
//! fail 40 s in.

use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-deps.sh")
}

/// Runs the check over `dirs` only; returns (succeeded, stdout).
fn check(dirs: &[&Path]) -> (bool, String) {
    let joined: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let out = Command::new("bash")
        .arg(script())
        .arg("--check")
        .env("PHALANX_LIBCLANG_DIRS", joined.join(":"))
        .output()
        .expect("run ensure-deps.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), stdout)
}

fn folder_with(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        std::fs::write(dir.path().join(f), b"").unwrap();
    }
    dir
}

#[test]
fn libclang_cpp_alone_is_not_libclang() {
    let llvm = folder_with(&["libclang-cpp.so.14", "libLLVM-14.so.1", "libclang-cpp.so"]);
    let (ok, out) = check(&[llvm.path()]);
    assert!(!ok, "libclang-cpp alone must mean install: {out}");
    assert!(out.contains("missing: libclang-dev"), "{out}");
}

#[test]
fn an_empty_machine_needs_libclang() {
    let empty = folder_with(&[]);
    let (ok, out) = check(&[empty.path(), Path::new("/nonexistent/phalanx")]);
    assert!(!ok, "{out}");
    assert!(out.contains("missing: libclang-dev"), "{out}");
}

#[test]
fn each_name_clang_sys_loads_counts() {
    for name in [
        "libclang.so",
        "libclang.so.1",
        "libclang-14.so",
        "libclang-14.so.1",
        "libclang-14.0.6.so",
    ] {
        let llvm = folder_with(&["libclang-cpp.so.14", name]);
        let (ok, out) = check(&[llvm.path()]);
        assert!(ok, "{name} is libclang: {out}");
        assert!(out.contains("nothing to install"), "{out}");
        assert!(out.contains(name), "names the library it found: {out}");
    }
}

#[test]
fn names_that_only_look_like_libclang_do_not_count() {
    for name in [
        "libclang-cpp.so.14",
        "libclang-cpp.so",
        "libclangBasic.a",
        "libclang.a",
        "libclang-rt.so",
    ] {
        let llvm = folder_with(&[name]);
        let (ok, out) = check(&[llvm.path()]);
        assert!(!ok, "{name} is not libclang: {out}");
    }
}

#[test]
fn libclang_in_a_later_folder_is_found() {
    let first = folder_with(&["libclang-cpp.so.14"]);
    let second = folder_with(&["libclang-14.so.1"]);
    let (ok, out) = check(&[first.path(), second.path()]);
    assert!(ok, "{out}");
    assert!(out.contains(&second.path().display().to_string()), "{out}");
}
