//! `cargo xtask test`: every check CI runs, in order, stopping at the first failure.
//!
//! The test runner goes last so its summary lines are the last thing printed.

use std::ffi::OsString;
use std::process::{Command, Stdio};

use anyhow::{Result, bail};

use crate::{cargo, run_step};

/// Runs fmt check, clippy, doc tests, rustdoc with warnings denied, loom model tests, then
/// nextest (or `cargo test`).
pub(crate) fn run(args: &[OsString]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!(
            "xtask test takes no arguments (got `{}`)",
            arg.to_string_lossy()
        );
    }

    let mut fmt = cargo()?;
    fmt.args(["fmt", "--all", "--", "--check"]);
    step("fmt", fmt)?;

    let mut clippy = cargo()?;
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    step("clippy", clippy)?;

    let mut doc = cargo()?;
    doc.args(["test", "--workspace", "--doc"]);
    step("doc tests", doc)?;

    // Docs are part of the feature: broken or ambiguous intra-doc links fail the build.
    let mut rustdoc = cargo()?;
    rustdoc
        .args([
            "doc",
            "--no-deps",
            "--workspace",
            "--exclude",
            "xtask",
            "--exclude",
            "examples",
        ])
        .env("RUSTDOCFLAGS", "-D warnings");
    step("rustdoc", rustdoc)?;

    // Release: loom explores many interleavings and is very slow in debug builds. The
    // crates with loom models: the address slot and its hazard pointers
    // (foundation-actors), the sharded runtime's shard protocol, runner pool and flow
    // control (foundation-registry).
    for (name, krate) in [
        ("loom", "foundation-actors"),
        ("loom (registry)", "foundation-registry"),
    ] {
        let mut loom = cargo()?;
        loom.args([
            "test",
            "-p",
            krate,
            "--features",
            "loom",
            "--lib",
            "--release",
            "loom_",
        ])
        .env("LOOM_MAX_PREEMPTIONS", "4");
        step(name, loom)?;
    }

    let mut tests = cargo()?;
    if nextest_available()? {
        eprintln!("==> xtask test: cargo-nextest found, running `cargo nextest run --workspace`");
        tests.args(["nextest", "run", "--workspace"]);
    } else {
        eprintln!(
            "==> xtask test: cargo-nextest not found, falling back to `cargo test --workspace`"
        );
        tests.args(["test", "--workspace"]);
    }
    step("tests", tests)
}

/// Prints the step header to stderr, then runs the step.
fn step(name: &str, cmd: Command) -> Result<()> {
    eprintln!("==> xtask test: {name}");
    run_step("test", name, cmd)
}

/// Whether `cargo nextest --version` works.
fn nextest_available() -> Result<bool> {
    let mut probe = cargo()?;
    probe
        .args(["nextest", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(probe.status().is_ok_and(|status| status.success()))
}
