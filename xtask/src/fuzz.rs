//! `cargo xtask fuzz [--seconds N] [--target NAME]... [--seeds]`: builds the fuzz targets in
//! `fuzz/` and runs each for a bounded time, one after another; the first crash fails the
//! command, naming the target and the input that crashed it.
//!
//! The targets build with nightly through `cargo fuzz` (`cargo install cargo-fuzz
//! --locked`), in the fuzz crate's own target directory: `CARGO_TARGET_DIR` is removed
//! for those builds, so nightly artifacts never land in the workspace's stable one. Each
//! run starts from the committed seeds in `fuzz/corpus/<target>/`, read only; what the
//! fuzzer finds goes to a scratch corpus under `fuzz/target/`, so the tree stays clean.
//!
//! `--seeds` instead rewrites the committed seeds from the crates' own encoders (after a
//! change of the wire format).

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{describe, run_step, workspace_root};

/// Seconds per target when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 15;

/// libFuzzer options for every run: a single allocation over this many MB is a crash (the
/// inputs are a few KB: no decoder should allocate this much for one), as is a run over
/// 10 s on one input (a hang).
const LIBFUZZER_OPTS: &[&str] = &["-malloc_limit_mb=64", "-timeout=10"];

/// Flags for `cargo fuzz build` and `run` (the same, or `run` would rebuild): release with
/// debug assertions and overflow checks, under AddressSanitizer.
const BUILD_FLAGS: &[&str] = &["--fuzz-dir", "fuzz", "--debug-assertions"];

/// Runs the command.
pub(crate) fn run(args: &[OsString]) -> Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut only: Vec<String> = Vec::new();
    let mut seeds = false;
    let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().context("--seconds needs a number")?;
                seconds = value
                    .parse()
                    .with_context(|| format!("--seconds: `{value}` is not a whole number"))?;
            }
            "--target" => only.push(args.next().context("--target needs a target's name")?),
            "--seeds" => seeds = true,
            other => bail!(
                "xtask fuzz: unknown argument `{other}` (takes --seconds N, --target NAME, --seeds)"
            ),
        }
    }
    if seeds {
        let mut write = nightly()?;
        write.args([
            "run",
            "--quiet",
            "--manifest-path",
            "fuzz/Cargo.toml",
            "--example",
            "seeds",
        ]);
        return run_step("fuzz", "seeds", write);
    }

    let mut probe = nightly()?;
    probe
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !probe.status().is_ok_and(|s| s.success()) {
        bail!(
            "xtask fuzz: `cargo +nightly fuzz` does not run; install it with \
             `rustup toolchain install nightly` and `cargo install cargo-fuzz --locked`"
        );
    }

    let started = Instant::now();
    eprintln!("==> xtask fuzz: build");
    let mut build = nightly()?;
    build.args(["fuzz", "build"]).args(BUILD_FLAGS);
    run_step("fuzz", "build", build)?;
    let built = started.elapsed();

    let targets = if only.is_empty() { list()? } else { only };
    let root = workspace_root()?;
    let mut lines = Vec::new();
    for target in &targets {
        let scratch = root.join("fuzz/target/xtask-corpus").join(target);
        if scratch.exists() {
            fs::remove_dir_all(&scratch)
                .with_context(|| format!("could not empty {}", scratch.display()))?;
        }
        fs::create_dir_all(&scratch)
            .with_context(|| format!("could not create {}", scratch.display()))?;
        let seeds = root.join("fuzz/corpus").join(target);
        eprintln!("==> xtask fuzz: {target} for {seconds} s");
        let mut cmd = nightly()?;
        cmd.args(["fuzz", "run"])
            .args(BUILD_FLAGS)
            .arg(target)
            .arg(&scratch);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .args(LIBFUZZER_OPTS);
        let done = fuzz_one(target, cmd)?;
        lines.push(format!("{target:<11} {done}"));
    }
    eprintln!(
        "==> xtask fuzz: {} targets, {seconds} s each, no crash (build {:.0} s, all {:.0} s)",
        targets.len(),
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for line in lines {
        eprintln!("    {line}");
    }
    Ok(())
}

/// `cargo +nightly …` from the workspace root, without the workspace's target directory.
fn nightly() -> Result<Command> {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly")
        .current_dir(workspace_root()?)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTUP_TOOLCHAIN");
    Ok(cmd)
}

/// The targets `cargo fuzz list` names.
fn list() -> Result<Vec<String>> {
    let mut cmd = nightly()?;
    cmd.args(["fuzz", "list", "--fuzz-dir", "fuzz"]);
    let out = cmd
        .output()
        .with_context(|| format!("could not run `{}`", describe(&cmd)))?;
    if !out.status.success() {
        bail!("xtask fuzz: `cargo fuzz list` failed ({})", out.status);
    }
    let targets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if targets.is_empty() {
        bail!("xtask fuzz: `cargo fuzz list` names no target");
    }
    Ok(targets)
}

/// Runs one target; returns libFuzzer's closing line ("Done N runs in S second(s)").
/// libFuzzer's progress goes to stderr: it is read here, and shown in full only when the
/// run fails.
fn fuzz_one(target: &str, mut cmd: Command) -> Result<String> {
    let shown = describe(&cmd);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let mut log = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            log.push(line.context("reading libFuzzer's output")?);
        }
    }
    let status = child.wait().context("waiting for libFuzzer")?;
    if !status.success() {
        let tail = log.len().saturating_sub(80);
        for line in &log[tail..] {
            eprintln!("{line}");
        }
        let artifact = log
            .iter()
            .rev()
            .find_map(|l| l.split("Test unit written to ").nth(1))
            .unwrap_or("(see the output above)");
        bail!(
            "xtask fuzz: target `{target}` failed ({status}); input: {artifact}; \
             reproduce with `cargo +nightly fuzz run --fuzz-dir fuzz -a {target} {artifact}`"
        );
    }
    Ok(log
        .iter()
        .rev()
        .find(|l| l.starts_with("Done "))
        .cloned()
        .unwrap_or_else(|| "done".to_owned()))
}
