//! Records the version and the git commit for `--version`: the build script both binaries
//! share, in `buildinfo/version.rs`.

include!("../buildinfo/version.rs");
