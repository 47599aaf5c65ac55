//! The BEAM beside our figures: `bench/beam/*.erl` (Phoenix.PubSub's design in plain
//! Erlang, and the headline rows' gen_server and supervisor) compiled with `erlc` and run
//! with `erl`: the local figures with the default schedulers and again on one scheduler,
//! then the cluster (three nodes on loopback).
//!
//! Used by `cargo xtask bench` (after the Rust benches, so both are in one run) and alone
//! by `cargo xtask beam`. Never fails the caller: when `erl` is missing and cannot be
//! installed (`apt-get install erlang-base`, as root), or a mode fails, its figures are
//! missing and [`Beam::get`] gives the reason.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one mode may run before it is killed.
const MODE_LIMIT: Duration = Duration::from_secs(600);

/// One run of `fbench:main/1`.
#[derive(Debug)]
struct Run {
    /// Its name, for messages and missing figures.
    name: &'static str,
    /// The argument of `fbench:main/1`.
    mode: &'static str,
    /// More `erl` arguments.
    erl_args: &'static [&'static str],
    /// Appended to each figure key of this run.
    suffix: &'static str,
}

/// The runs, in order: the local figures with the BEAM's default schedulers (one per
/// core), again on one scheduler (as our headline rows run on a current-thread runtime),
/// then the cluster.
const RUNS: &[Run] = &[
    Run {
        name: "local",
        mode: "local",
        erl_args: &[],
        suffix: "",
    },
    Run {
        name: "local_1s",
        mode: "local",
        erl_args: &["+S", "1:1"],
        suffix: "_1s",
    },
    Run {
        name: "cluster",
        mode: "cluster",
        erl_args: &[],
        suffix: "",
    },
];

/// What the BEAM measured.
#[derive(Debug, Default)]
pub(crate) struct Beam {
    /// Figures by key (`pubsub_local_fanout`, ...): value and unit.
    figures: BTreeMap<String, (f64, String)>,
    /// Why a mode gave no figures, by mode.
    missing: BTreeMap<String, String>,
    /// The run's `info` lines (OTP release, schedulers, per-round figures).
    pub(crate) info: Vec<String>,
}

/// Which run measures a figure key (for the reason a figure is missing).
fn run_of(key: &str) -> &'static str {
    if key.starts_with("pubsub_cluster") || key.starts_with("remote_") || key.starts_with("killed")
    {
        "cluster"
    } else if key.ends_with("_1s") {
        "local_1s"
    } else {
        "local"
    }
}

impl Beam {
    /// The value of figure `key`, or why it is missing.
    pub(crate) fn get(&self, key: &str) -> Result<f64, String> {
        if let Some((value, _)) = self.figures.get(key) {
            return Ok(*value);
        }
        let run = run_of(key);
        Err(self
            .missing
            .get(run)
            .cloned()
            .unwrap_or_else(|| format!("the BEAM's `{run}` run gave no `{key}`")))
    }

    /// A result with these figures (their unit left empty) and these runs missing.
    #[cfg(test)]
    pub(crate) fn for_test(figures: &[(&str, f64)], missing: &[(&str, &str)]) -> Self {
        Beam {
            figures: figures
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v, String::new())))
                .collect(),
            missing: missing
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            info: Vec::new(),
        }
    }

    /// `{"figures": [...], "missing": {...}, "info": [...]}`.
    pub(crate) fn to_json(&self) -> String {
        let figures: Vec<serde_json::Value> = self
            .figures
            .iter()
            .map(|(name, (value, unit))| {
                serde_json::json!({ "name": name, "value": value, "unit": unit })
            })
            .collect();
        let doc = serde_json::json!({
            "figures": figures,
            "missing": self.missing,
            "info": self.info,
        });
        format!("{doc:#}\n")
    }
}

/// Installs the BEAM if needed, compiles `bench/beam` into `<target>/beam` and runs every
/// mode; figures go to `<target>/bench-beam.json` too.
pub(crate) fn measure(root: &Path, target: &Path) -> Beam {
    let mut beam = Beam::default();
    let ebin = target.join("beam");
    let ready = ensure_erl().and_then(|()| compile(&root.join("bench").join("beam"), &ebin));
    match ready {
        Err(reason) => {
            eprintln!("==> xtask beam: the BEAM's rows are missing: {reason}");
            for run in RUNS {
                beam.missing.insert(run.name.to_owned(), reason.clone());
            }
        }
        Ok(()) => {
            for run in RUNS {
                eprintln!("==> xtask beam: {}", run.name);
                // A run that fails keeps the figures it printed before it failed.
                let (out, failed) = run_erl(&ebin, run);
                let parsed = parse(&out);
                let tagged = parsed.info.iter().map(|i| format!("{}: {i}", run.name));
                beam.info.extend(tagged);
                for (key, figure) in parsed.figures {
                    beam.figures.insert(format!("{key}{}", run.suffix), figure);
                }
                if let Some(reason) = failed.or(parsed.error) {
                    eprintln!("==> xtask beam: {} failed: {reason}", run.name);
                    beam.missing.insert(run.name.to_owned(), reason);
                }
            }
        }
    }
    let path = target.join("bench-beam.json");
    if let Err(e) = std::fs::write(&path, beam.to_json()) {
        eprintln!("==> xtask beam: could not write {}: {e}", path.display());
    }
    beam
}

/// Whether `program` is an executable file on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// `erl` and `erlc` on `PATH`, installing Debian's `erlang-base` (as root) if missing.
fn ensure_erl() -> Result<(), String> {
    if on_path("erl") && on_path("erlc") {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root || !on_path("apt-get") {
        return Err("`erl` is not installed (install Debian's `erlang-base`: \
                    apt-get install erlang-base; xtask installs it only as root)"
            .to_owned());
    }
    eprintln!("==> xtask beam: `erl` is missing; installing erlang-base with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "erlang-base"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let updated = Command::new("apt-get")
            .arg("update")
            .status()
            .is_ok_and(|s| s.success());
        if !updated || !install() {
            return Err("`erl` is not installed and `apt-get install erlang-base` failed".into());
        }
    }
    if on_path("erl") && on_path("erlc") {
        Ok(())
    } else {
        Err("erlang-base was installed but `erl` or `erlc` is not on PATH".to_owned())
    }
}

/// `erlc` of every `.erl` file in `src` into `ebin`.
fn compile(src: &Path, ebin: &Path) -> Result<(), String> {
    std::fs::create_dir_all(ebin).map_err(|e| format!("creating {}: {e}", ebin.display()))?;
    let mut sources: Vec<PathBuf> = std::fs::read_dir(src)
        .map_err(|e| format!("reading {}: {e}", src.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension() == Some(OsStr::new("erl")))
        .collect();
    sources.sort();
    if sources.is_empty() {
        return Err(format!("no Erlang sources in {}", src.display()));
    }
    let out = Command::new("erlc")
        .arg("-o")
        .arg(ebin)
        .args(&sources)
        .output()
        .map_err(|e| format!("could not run erlc: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "erlc failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// Runs `fbench:main([mode])`, echoing its output; its stdout, and why it failed if it did.
fn run_erl(ebin: &Path, run: &Run) -> (String, Option<String>) {
    // stderr goes to a file: a daemon `erl` starts (epmd) must not hold a pipe we wait on.
    let errors = ebin.join(format!("{}.stderr", run.name));
    match spawn_erl(ebin, run, &errors) {
        Ok((child, reader)) => wait_erl(run.name, child, reader, &errors),
        Err(reason) => (String::new(), Some(reason)),
    }
}

/// The text a reader thread collects.
type Reader = std::thread::JoinHandle<String>;

/// Starts `erl` for `run`, with a thread reading its stdout (echoed); its stderr goes to
/// the file `errors`.
fn spawn_erl(
    ebin: &Path,
    run: &Run,
    errors: &Path,
) -> Result<(std::process::Child, Reader), String> {
    let (mode, name) = (run.mode, run.name);
    let mut cmd = Command::new("erl");
    cmd.arg("-noinput").args(run.erl_args);
    if mode == "cluster" {
        // Distributed Erlang on loopback: a short name and a cookie of this run (erl
        // starts epmd if it is not running).
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let id = std::process::id();
        cmd.args(["-sname", &format!("fbench_a_{id}")]);
        cmd.args(["-setcookie", &format!("fbench_{id}_{nanos}")]);
    }
    cmd.arg("-pa")
        .arg(ebin)
        .args(["-run", "fbench", "main", mode]);
    let stderr =
        std::fs::File::create(errors).map_err(|e| format!("creating {}: {e}", errors.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = cmd.spawn().map_err(|e| format!("could not run erl: {e}"))?;
    let stdout = child.stdout.take().ok_or("erl has no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("beam {name}: {line}");
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    Ok((child, reader))
}

/// Waits for `erl` (killing it after `MODE_LIMIT`); its stdout, and why it failed if it did.
fn wait_erl(
    name: &str,
    mut child: std::process::Child,
    reader: Reader,
    errors: &Path,
) -> (String, Option<String>) {
    let deadline = Instant::now() + MODE_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                // Our own child, by its handle; its peers halt when it goes.
                let _killed = child.kill();
                let _reaped = child.wait();
                break Err(format!(
                    "`{name}` ran longer than {MODE_LIMIT:?} and was killed"
                ));
            }
            Err(e) => break Err(format!("waiting for erl: {e}")),
        }
    };
    let out = reader.join().unwrap_or_default();
    let err = std::fs::read_to_string(errors).unwrap_or_default();
    let failed = match status {
        Ok(status) if status.success() => None,
        Ok(status) => {
            let why = out
                .lines()
                .find_map(|l| l.strip_prefix("error\t"))
                .map(str::to_owned)
                .unwrap_or_else(|| err.trim().chars().take(400).collect());
            Some(format!("erl `{name}` exited with {status}: {why}"))
        }
        Err(reason) => Some(reason),
    };
    (out, failed)
}

/// What one run printed.
#[derive(Debug, Default)]
struct Parsed {
    figures: BTreeMap<String, (f64, String)>,
    info: Vec<String>,
    error: Option<String>,
}

/// Reads `figure<TAB>key<TAB>value<TAB>unit`, `info<TAB>text` and `error<TAB>text` lines;
/// other lines are ignored.
fn parse(out: &str) -> Parsed {
    let mut parsed = Parsed::default();
    for line in out.lines() {
        let mut fields = line.split('\t');
        match fields.next() {
            Some("figure") => {
                let (Some(key), Some(value), Some(unit)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                match value.parse::<f64>() {
                    Ok(v) if v.is_finite() => {
                        parsed.figures.insert(key.to_owned(), (v, unit.to_owned()));
                    }
                    _ => {
                        parsed.error = Some(format!("unreadable figure line `{line}`"));
                    }
                }
            }
            Some("info") => parsed.info.push(fields.collect::<Vec<_>>().join("\t")),
            Some("error") => parsed.error = Some(fields.collect::<Vec<_>>().join("\t")),
            _ => {}
        }
    }
    parsed
}

/// `cargo xtask beam`: the BEAM's figures alone.
pub(crate) fn run(args: &[std::ffi::OsString]) -> anyhow::Result<()> {
    if let Some(arg) = args.first() {
        anyhow::bail!(
            "xtask beam: unknown argument `{}` (usage: cargo xtask beam)",
            arg.to_string_lossy()
        );
    }
    let target = crate::bench::target_dir()?;
    let beam = measure(&crate::workspace_root()?, &target);
    for (key, (value, unit)) in &beam.figures {
        println!("{key:<32} {value:>14.1} {unit}");
    }
    for (mode, reason) in &beam.missing {
        println!("{mode}: missing: {reason}");
    }
    eprintln!(
        "==> xtask beam: wrote {}",
        target.join("bench-beam.json").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_figures_info_and_errors() {
        let out = "info\totp 25, erts 13.1.5, 2 schedulers online\n\
                   figure\tpubsub_local_fanout\t412.500\tns/delivery\n\
                   noise from erl\n\
                   figure\ttell\tnan\tns/msg\n\
                   figure\tshort\t1.0\n";
        let parsed = parse(out);
        assert_eq!(
            parsed.figures.get("pubsub_local_fanout"),
            Some(&(412.5, "ns/delivery".to_owned()))
        );
        assert_eq!(parsed.figures.len(), 1, "{:?}", parsed.figures);
        assert_eq!(parsed.info, ["otp 25, erts 13.1.5, 2 schedulers online"]);
        assert!(parsed.error.as_deref().is_some_and(|e| e.contains("tell")));
    }

    #[test]
    fn a_missing_figure_gives_its_mode_reason() {
        let mut beam = Beam::default();
        beam.figures
            .insert("tell".to_owned(), (300.0, "ns/msg".to_owned()));
        beam.missing
            .insert("cluster".to_owned(), "epmd did not start".to_owned());
        assert_eq!(beam.get("tell"), Ok(300.0));
        assert_eq!(
            beam.get("pubsub_cluster_broadcast"),
            Err("epmd did not start".to_owned())
        );
        assert!(
            beam.get("remote_call")
                .is_err_and(|e| e == "epmd did not start")
        );
        assert!(beam.get("call").is_err_and(|e| e.contains("`local`")));
        assert!(beam.get("call_1s").is_err_and(|e| e.contains("`local_1s`")));
    }
}
