//! Project tasks for the Foundation workspace, run as `cargo xtask <command>`.
//!
//! - `test`: formatting, lints, doc tests, loom model tests, then the test suite.
//! - `bench [--quick]`: the criterion and memory benches, summarised against their budgets.
//! - `beam`: the BEAM's side of the bench table alone (`bench/beam/*.erl`).
//! - `demo [args...]`: the runnable demo in `examples`.
//! - `cluster status|tree|names [--url URL] [--token T]`: a running cluster, read from a
//!   node's `/cluster` endpoint and printed for the terminal.
//! - `fuzz [--seconds N] [--target NAME]... [--seeds]`: a bounded run of every fuzz target
//!   in `fuzz/` (nightly and cargo-fuzz), or a rewrite of their seed corpus.

mod beam;
mod bench;
mod cluster;
mod demo;
mod fuzz;
mod test;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

/// The usage text printed for no command, `help`, or an unknown command.
const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  test             fmt check, clippy, doc tests, loom model tests, then the test suite
                   (cargo-nextest if installed, else cargo test)
  bench [--quick]  run the criterion and memory benches and print the budget table
                   (also writes target/bench-summary.json)
  beam             only the BEAM's figures (bench/beam/*.erl with erl; installs
                   erlang-base as root if missing), written to target/bench-beam.json
  demo [args...]   run the demo program in `examples`, passing args through
  cluster status|tree|names [--url http://127.0.0.1:PORT] [--token T]
                   a running cluster, from a node's /cluster endpoint (default URL
                   http://127.0.0.1:4380; the token defaults to FOUNDATION_HTTP_TOKEN):
                   status = each node's status, address, profile, discovery, uptime
                   and members; tree = supervisors and children per node; names =
                   registered names, topics and caches
  fuzz [--seconds N] [--target NAME]... [--seeds]
                   build the fuzz targets in `fuzz/` (cargo +nightly fuzz) and run each
                   for N seconds (default 15); the first crash fails, naming the target.
                   --seeds rewrites fuzz/corpus/ from the crates' encoders instead
";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let command = args.next();
    let rest: Vec<OsString> = args.collect();

    let result = match command.as_ref().and_then(|c| c.to_str()) {
        Some("test") => test::run(&rest),
        Some("bench") => bench::run(&rest),
        Some("beam") => beam::run(&rest),
        Some("demo") => demo::run(&rest),
        Some("cluster") => cluster::run(&rest),
        Some("fuzz") => fuzz::run(&rest),
        None | Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(_) => {
            let shown = command.unwrap_or_default();
            eprintln!("error: unknown command `{}`\n", shown.to_string_lossy());
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory.
pub(crate) fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent (cannot find the workspace root)")
}

/// A `cargo` command run from the workspace root, using the cargo that launched xtask.
pub(crate) fn cargo() -> Result<Command> {
    let program: OsString = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(OsString::from))
        .unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root()?);
    Ok(cmd)
}

/// Renders a command as `cargo arg arg ...` for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut text = String::from("cargo");
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` with inherited stdio and fails, naming `step`, unless it exits successfully.
pub(crate) fn run_step(task: &str, step: &str, mut cmd: Command) -> Result<()> {
    let shown = describe(&cmd);
    let status = cmd
        .status()
        .with_context(|| format!("xtask {task}: step `{step}`: could not start `{shown}`"))?;
    if !status.success() {
        bail!("xtask {task}: step `{step}` failed ({status}): `{shown}`");
    }
    Ok(())
}
