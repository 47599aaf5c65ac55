//! A chat over pubsub: every copy of this program is a node of one cluster, subscribed to
//! the topic `chat.lobby`; a line typed into one is broadcast to all the others.
//!
//! Run with: `cargo run -p examples --bin chat -- alice` (the nick defaults to the node's
//! name). It prints `chat: <node> at <address>`, then every line it hears as
//! `<nick@node> text`, and `* <node> joined` / `* <node> left` as nodes come and go.
//!
//! More nodes, in other terminals: on the same LAN, the same command
//! (`cargo run -p examples --bin chat -- bob`) finds the others by mDNS (the development
//! profile's discovery). Where multicast does not pass (a VPN, a container), name a
//! running node's address instead:
//!
//! ```text
//! FOUNDATION_PROFILE=development FOUNDATION_PEERS=<address> cargo run -p examples --bin chat -- bob
//! ```
//!
//! Ctrl-C, or Ctrl-D at a terminal, leaves the cluster gracefully (the others print
//! `* <node> left`). When stdin is not a terminal (a pod, a service), its end does not
//! stop the program: it runs until SIGTERM. This is the program the Kubernetes example's
//! image runs (`examples/kubernetes`).

use std::io::IsTerminal;

use foundation::prelude::*;

/// One line of the chat, as broadcast: its wire form is its fields, in order.
#[derive(Clone, Debug, RemoteMessage)]
#[remote(name = "examples.ChatLine")]
struct ChatLine {
    nick: String,
    node: String,
    text: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logs("warn");
    // Everything about the cluster comes from FOUNDATION_* and foundation.toml.
    let app = Foundation::start().await?;
    let me = app.node().name().to_owned();
    let nick = std::env::args().nth(1).unwrap_or_else(|| me.clone());
    let lobby = Topic::<ChatLine>::new("chat.lobby")?;
    let mut heard = app.pubsub().subscribe_stream(&lobby)?;
    let mut events = app.node().subscribe();
    println!("chat: {me} at {}", app.node().advertised());
    // Peers met before the subscription (static seeds connect during the start): said
    // once here, once for each later up.
    let mut up: std::collections::HashSet<String> = app
        .node()
        .members()
        .into_iter()
        .filter(|m| m.status == foundation::cluster::membership::Status::Up && m.id != me)
        .map(|m| m.id)
        .collect();
    for id in &up {
        println!("* {id} joined");
    }

    // A thread of its own reads stdin: a blocking read cannot be cancelled, and a
    // runtime's blocking thread would hold up the exit.
    let interactive = std::io::stdin().is_terminal();
    let (tx, mut typed) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    if interactive {
        println!("chat: you are {nick}; type a line to send it, Ctrl-D or Ctrl-C to leave");
    }

    let mut reading = true;
    loop {
        tokio::select! {
            line = typed.recv(), if reading => match line {
                Some(text) if text.trim().is_empty() => {}
                Some(text) => {
                    let line = ChatLine { nick: nick.clone(), node: me.clone(), text };
                    if let Err(e) = app.pubsub().broadcast(&lobby, line) {
                        eprintln!("chat: not sent: {e}");
                    }
                }
                // Ctrl-D at a terminal: leave. Elsewhere, run on until told to stop.
                None if interactive => break,
                None => {
                    println!("chat: no more input; running until SIGTERM");
                    reading = false;
                }
            },
            line = heard.recv() => match line {
                // Our own lines come back too: the terminal shows them already.
                Some(line) if line.node == me => {}
                Some(line) => println!("<{}@{}> {}", line.nick, line.node, line.text),
                None => break,
            },
            event = events.recv() => match event {
                Ok(ClusterEvent::NodeUp(m)) => {
                    if up.insert(m.id.clone()) {
                        println!("* {} joined", m.id);
                    }
                }
                Ok(ClusterEvent::NodeLeaving(m)) => println!("* {} is leaving", m.id),
                Ok(ClusterEvent::NodeDown { member, reason }) => {
                    up.remove(&member.id);
                    println!("* {} left ({reason:?})", member.id);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            },
            // SIGTERM or Ctrl-C: the runtime leaves the cluster by itself.
            () = app.stopped() => break,
        }
    }
    app.shutdown().await;
    println!("chat: {me} left");
    Ok(())
}
