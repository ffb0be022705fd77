// The build script of both binaries (the gateway and the example worker), included by each
// crate's `build.rs`: it records the version and the git commit the binary is built from, for
// `--version` (`OPENIM_BUILD_VERSION`, such as `0.1.0 (commit d7480da)`).
//
// `OPENIM_BUILD_COMMIT` wins (an image built without `.git` can pass it); otherwise
// `git rev-parse --short HEAD`. When neither is available (a source tarball, no git) the
// build goes on and `--version` shows the version alone.

use std::{path::Path, process::Command};

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Asks cargo to run this again when HEAD moves (a commit or a checkout), and only then:
/// the binary's crate is rebuilt for a new commit, not for every build.
fn watch_head() {
    let Some(head) = git(&["rev-parse", "--path-format=absolute", "--git-path", "HEAD"]) else {
        return;
    };
    println!("cargo:rerun-if-changed={head}");
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let reference = git(&["rev-parse", "--path-format=absolute", "--git-path", &branch]);
        let packed = git(&[
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            "packed-refs",
        ]);
        // A path that does not exist would make cargo rerun this on every build.
        for path in [reference, packed].into_iter().flatten() {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=OPENIM_BUILD_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../buildinfo/version.rs");
    let commit = std::env::var("OPENIM_BUILD_COMMIT")
        .ok()
        .filter(|commit| !commit.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]));
    watch_head();
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let line = match commit {
        Some(commit) => format!("{version} (commit {commit})"),
        None => version,
    };
    println!("cargo:rustc-env=OPENIM_BUILD_VERSION={line}");
}
