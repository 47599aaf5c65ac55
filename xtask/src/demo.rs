//! `cargo xtask demo [args...]`: runs the demo program in `examples`.

use std::ffi::OsString;

use anyhow::Result;

use crate::{cargo, run_step};

/// Runs `cargo run --quiet -p examples --bin demo`, passing `args` through to the demo.
pub(crate) fn run(args: &[OsString]) -> Result<()> {
    let mut cmd = cargo()?;
    cmd.args(["run", "--quiet", "-p", "examples", "--bin", "demo"]);
    if !args.is_empty() {
        cmd.arg("--").args(args);
    }
    run_step("demo", "demo", cmd)
}
