//! Runs the `sharded` example as a user would (`cargo run -p examples --bin sharded`),
//! and checks what it printed: three node processes, a kill -9 and a graceful leave.

use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn three_nodes_serve_the_accounts_through_a_kill_and_a_leave() {
    let child = Command::new(env!("CARGO_BIN_EXE_sharded"))
        .env_remove("SHARDED_EXAMPLE_NODE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    // Generous: the program itself waits 30 s at most for anything.
    let Ok(out) = rx.recv_timeout(Duration::from_secs(180)) else {
        let _ = Command::new("kill").args(["-9", &pid]).status();
        panic!("the sharded example did not finish in 180 s");
    };
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    for line in [
        "3 nodes run `accounts`",
        "300 accounts, owned by {\"a\": ",
        "every balance read back from its owner",
        "c killed: its ",
        "b left: its ",
        "a owns {\"a\": 300}",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}\n{stderr}");
    }
    // Every account c owned answered again from the survivors.
    let killed = stdout.lines().find(|l| l.contains("c killed")).unwrap();
    assert!(
        killed.contains("from {\"a\": ") && !killed.contains("\"c\""),
        "{killed}"
    );
    assert!(
        killed.contains(" with their balance ") && killed.contains(" from 0 "),
        "{killed}"
    );
}
