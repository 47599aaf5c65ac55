//! The node's decoders of peer bytes, for the fuzz targets (see `crate::fuzzing`).
//!
//! Each function runs the decode the node runs on bytes a peer sent, through the same
//! functions, and reports whether the bytes were accepted. None may panic.

use std::time::{Duration, Instant};

use foundation_actors::Context;

use ractor::Message as _;
use ractor::message::SerializedMessage;
use tokio::io::AsyncReadExt;

use super::agent::{AgentMsg, Hello, VARIANT};
use super::lane::{self, Heard, PREAMBLE};
use super::wire::{self, DEFAULT_MAX_FRAME, Item, Refusal};

/// An inbound lane as `runtime::lane_in` reads it: the preamble, the first frame, whose
/// first item must be a hello, the items after it, then frames until the bytes end.
/// The hello's token is taken as valid, so the frames after it are read too.
pub fn lane(bytes: &[u8]) -> bool {
    let mut io = bytes;
    let opened = poll_ready(async {
        let mut pre = [0u8; PREAMBLE.len()];
        io.read_exact(&mut pre).await.ok()?;
        if pre != *PREAMBLE {
            return None;
        }
        let mut buf = Vec::new();
        lane::read_frame(&mut io, DEFAULT_MAX_FRAME, &mut buf)
            .await
            .ok()?;
        Some(buf)
    });
    let Some(Some(first)) = opened else {
        return false;
    };
    let mut rest = &first[..];
    if !matches!(wire::take_item(&mut rest), Ok(Item::Hello { .. })) {
        return false;
    }
    if !items(rest) {
        return false;
    }
    let heard = Heard::new(Instant::now());
    let read = poll_ready(lane::read_frames(
        &mut io,
        DEFAULT_MAX_FRAME,
        &heard,
        |item| {
            std::hint::black_box(item);
        },
    ));
    matches!(read, Some(Ok(())))
}

/// One frame's body: items until it ends, as `lane::read_frames` takes them (a cast's or a
/// call's context is decoded with its item).
pub fn items(body: &[u8]) -> bool {
    let mut rest = body;
    while !rest.is_empty() {
        match wire::take_item(&mut rest) {
            Ok(item) => {
                std::hint::black_box(item);
            }
            Err(_) => return false,
        }
    }
    true
}

/// A message to the node's agent over a ractor_cluster session (a hello, a leave, a list
/// of members), as ractor hands its arguments to the agent's `deserialize`.
pub fn agent(args: &[u8]) -> bool {
    let msg = SerializedMessage::Cast {
        variant: VARIANT.to_owned(),
        args: args.to_vec(),
        metadata: None,
    };
    AgentMsg::deserialize(msg).is_ok()
}

/// Polls `fut` until it is ready: reading from a byte slice never waits.
fn poll_ready<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    // The reader yields now and then (a pending poll that is ready when polled again);
    // bytes in memory never leave it waiting otherwise.
    for _ in 0..4096 {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

/// Seed inputs for the targets `lane`, `items` and `hello`, made with the node's own
/// encoders: (target, bytes).
pub(crate) fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let ctx = Context::new()
        .with_request_id("req-1")
        .with_baggage("tenant", "acme")
        .with_timeout(Duration::from_secs(5));
    let items = [
        Item::Hello {
            token: 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
            node: "node-a",
            incarnation: 1_700_000_000_000,
            channel: "control",
            lane: 0,
        },
        Item::Cast {
            name: "kv",
            ctx: None,
            ty: 0x5d1e_7c0a_93b2_44f1,
            msg: b"\x01\x03key\x02\x07\x08",
        },
        Item::Cast {
            name: "$registry/default",
            ctx: Some(ctx.clone()),
            ty: 0x0123_4567_89ab_cdef,
            msg: b"\x00",
        },
        Item::Call {
            id: 42,
            name: "greeter",
            ctx: Some(ctx.clone()),
            ty: 0x1b87_3593_0f2e_6c41,
            reply: 0x9e37_79b9_7f4a_7c15,
            msg: b"\x01\x03ada",
        },
        Item::Reply {
            id: 42,
            result: Ok(b"\x09hello ada"),
        },
        Item::Reply {
            id: 43,
            result: Err((Refusal::NoSuchName, "")),
        },
        Item::Reply {
            id: 44,
            result: Err((Refusal::WrongType, "test.Probe")),
        },
        Item::Heartbeat,
        Item::Leave,
    ];
    let mut seeds = Vec::new();
    let mut all = Vec::new();
    for item in &items {
        let mut one = Vec::new();
        wire::put_item(&mut one, item);
        all.extend_from_slice(&one);
        seeds.push(("items", one));
    }
    seeds.push(("items", all));

    // A lane: the hello and a cast in the first frame, then a frame of calls and replies,
    // then one with a heartbeat and a leave.
    let frame = |out: &mut Vec<u8>, items: &[Item<'_>]| {
        let mut body = Vec::new();
        for item in items {
            wire::put_item(&mut body, item);
        }
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&body);
    };
    let mut lane = PREAMBLE.to_vec();
    frame(&mut lane, &items[..3]);
    frame(&mut lane, &items[3..6]);
    frame(&mut lane, &items[6..]);
    seeds.push(("lane", lane));
    let mut hello_only = PREAMBLE.to_vec();
    frame(&mut hello_only, &items[..1]);
    seeds.push(("lane", hello_only));

    let hello = Hello {
        cluster: "default".into(),
        node: "node-a".into(),
        incarnation: 1_700_000_000_000,
        addr: "10.0.0.1:4369".into(),
        token: u128::MAX / 3,
        members: vec!["10.0.0.2:4369".into(), "10.0.0.3:4369".into()],
        silence_ms: 3000,
        channels: vec!["control".into(), "default".into()],
    };
    let agent = [
        AgentMsg::Hello(hello),
        AgentMsg::Leaving {
            node: "node-b".into(),
            incarnation: 7,
        },
        AgentMsg::Members {
            members: vec!["10.0.0.4:4369".into()],
        },
    ];
    for msg in agent {
        if let Ok(SerializedMessage::Cast { args, .. }) = msg.serialize() {
            seeds.push(("hello", args));
        }
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_is_accepted_by_its_decoder() {
        let seeds = seeds();
        for target in ["lane", "items", "hello"] {
            assert!(
                seeds.iter().any(|(t, _)| *t == target),
                "no seed for {target}"
            );
        }
        for (target, bytes) in seeds {
            let ok = match target {
                "lane" => lane(&bytes),
                "items" => items(&bytes),
                "hello" => agent(&bytes),
                other => panic!("a seed for an unknown target {other}"),
            };
            assert!(ok, "a {target} seed is refused: {bytes:?}");
        }
    }
}
