//! Runs the program as a user would, and checks what it printed.

#![allow(clippy::unwrap_used, missing_docs)] // tests unwrap: a failure is the point

use std::process::Command;
use std::time::Duration;

#[test]
fn two_nodes_call_each_other() {
    let child = Command::new(env!("CARGO_BIN_EXE_two-nodes"))
        .env_remove("FOUNDATION_NODE_NAME")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    // Generous: the program itself waits 30 s at most for anything.
    let Ok(out) = rx.recv_timeout(Duration::from_secs(120)) else {
        let _ = Command::new("kill").args(["-9", &pid]).status();
        panic!("two-nodes did not finish in 120 s");
    };
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    for line in [
        "first: second is up at 127.0.0.1:",
        "first: second counts 2",
        "second: first counts 40",
        "first: my counter says 40",
        "second: first is down (Left)",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}\n{stderr}");
    }
}

#[test]
fn its_one_dependency_is_the_facade() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let deps: Vec<&str> = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    assert_eq!(deps, ["foundation.workspace = true"]);
    assert_eq!(manifest.matches("dependencies]").count(), 1, "{manifest}");
}
