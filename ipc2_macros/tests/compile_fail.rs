//! What `#[ipc2::service]` accepts, and what it says about what it does
//! not.
//!
//! - `ui/pass`: traits that must compile (the norpc seed's, word for word,
//!   and one with everything a user may shadow in scope).
//! - `ui/macro`: traits the macro rejects. Its messages are its own, so the
//!   reviewed `.stderr` files hold on any compiler.
//! - `ui/types`: traits the compiler rejects when it checks the generated
//!   code (a non-serde argument, a `Result` that is not std's). The wording
//!   of those messages changes between compiler versions, so these cases
//!   run only on the compiler they were reviewed with ([`REVIEWED_WITH`]);
//!   on another one the test says so and skips them. Regenerate with
//!   `TRYBUILD=overwrite cargo test -p ipc2_macros --test compile_fail` and
//!   review the diff.

use std::process::Command;

/// `rustc --version` of the compiler the `ui/types` output was reviewed with.
const REVIEWED_WITH: &str = "rustc 1.95.0";

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/macro/*.rs");
    match rustc_version() {
        Some(version) if version.starts_with(REVIEWED_WITH) => {
            cases.compile_fail("tests/ui/types/*.rs");
        }
        other => {
            eprintln!("skipping tests/ui/types: reviewed with {REVIEWED_WITH}, this is {other:?}")
        }
    }
}

fn rustc_version() -> Option<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc).arg("--version").output().ok()?;
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
