//! Locating the binaries the tests and examples run.
//!
//! Integration tests of the root package cannot name another package's
//! binaries with `CARGO_BIN_EXE_*`, and `cargo test` does not build them, so
//! the first call here runs `cargo build` for the `worker_test` package (a
//! no-op when it is up to date) into the same target directory and profile
//! as the running executable.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Path of a binary of the `worker_test` package (`worker_test`,
/// `behaviour_worker`, `rogue_worker`, `pool_holder`), built if needed.
///
/// Panics with cargo's output if the build fails: this is test support.
pub fn worker_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    built_once(&BUILT, &["-p", "worker_test", "--bins"]).join(name)
}

/// Path of `remote_behaviour_worker`, the behaviour worker dialling its
/// host over TLS, built if needed (alone, with `worker_test`'s `remote`
/// feature, so that the other test workers never build rustls).
pub fn remote_worker_binary() -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let selection = [
        "-p",
        "worker_test",
        "--bin",
        "remote_behaviour_worker",
        "--features",
        "remote",
    ];
    built_once(&BUILT, &selection).join("remote_behaviour_worker")
}

/// Path of an example of the root `ipc2` package, built if needed.
pub fn example_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    built_once(&BUILT, &["-p", "ipc2", "--examples"])
        .join("examples")
        .join(name)
}

/// Runs `cargo build <selection>` the first time it is asked (per `once`),
/// and returns the profile directory the results land in.
fn built_once(once: &OnceLock<Result<(), String>>, selection: &[&str]) -> PathBuf {
    let profile_dir = profile_dir();
    if let Err(message) = once.get_or_init(|| build(&profile_dir, selection)) {
        panic!("`cargo build {}` failed: {message}", selection.join(" "));
    }
    profile_dir
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `target/<profile>` of the running executable: its own directory for a
/// binary, the parent of `deps/` or `examples/` for a test or an example.
/// A doctest runs from a temporary directory outside the target directory:
/// it gets `target/debug` (or `$CARGO_TARGET_DIR/debug`), the path README's
/// examples name.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable has a path");
    let dir = exe.parent().expect("an executable lives in a directory");
    let dir = match dir.file_name().and_then(|name| name.to_str()) {
        Some("deps" | "examples") => dir.parent().unwrap_or(dir),
        _ => dir,
    };
    // Cargo keeps its fingerprints in every profile directory it builds.
    if dir.join(".fingerprint").is_dir() {
        return dir.to_path_buf();
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("debug")
}

fn build(profile_dir: &Path, selection: &[&str]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "--quiet"])
        .args(selection);
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        command.arg("--release");
    }
    if let Some(target_dir) = profile_dir.parent() {
        command.env("CARGO_TARGET_DIR", target_dir);
    }
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
