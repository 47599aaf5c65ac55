//! The lane protocol: frames of items, as plain encoding and decoding without I/O.
//!
//! A lane is a one-way TCP connection from one node to another that carries user messages,
//! call replies and heartbeats. Its bytes are frames:
//!
//! ```text
//! frame = len: u32 (little endian, the body's length) · body
//! body  = item*
//! item  = kind: u8 · fields
//! ```
//!
//! Integers in fields are LEB128 varints; byte strings are a varint length and the bytes.
//! The first item on a lane is [`Item::Hello`]; a lane whose first item is anything else,
//! or whose frames do not parse, is closed.
//!
//! ```text
//! hello = 6 · token: u128 · node · incarnation · channel · lane
//! ```
//!
//! `lane` numbers the lanes of one channel from one node, from 0 to its parallelism - 1.
//!
//! A cast or a call carries its message type's identity, the [`wire_id`] hash of its wire
//! name (8 bytes, little endian), and a call the reply type's the caller expects (or
//! [`NOT_A_CALL`]): the receiving node compares them with its process's before it decodes
//! the message, so a message of another type never reaches a handler.
//!
//! ```text
//! cast  = 1 · name · ctx · type: u64 · msg
//! call  = 2 · id · name · ctx · type: u64 · reply type: u64 · msg
//! reply = 3 · id · (0 · bytes | status | status · their type's wire name)
//! ```
//!
//! A reply refused with [`Refusal::WrongType`] or [`Refusal::WrongReplyType`] names the
//! refusing process's type, so the caller's error names both.
//!
//! [`wire_id`]: foundation_actors::remote::wire_id

use foundation_actors::Context;

/// The largest frame body a lane accepts by default (8 MiB); a larger length is refused
/// before anything is allocated.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;

/// Bytes of the frame header.
pub(crate) const HEADER: usize = 4;

const CAST: u8 = 1;
const CALL: u8 = 2;
const REPLY: u8 = 3;
const HEARTBEAT: u8 = 4;
const LEAVE: u8 = 5;
const HELLO: u8 = 6;

/// The reply type a call carries when its message is not a call variant: no handler's
/// reply type hashes to it (a hash of 0 would be refused as another type).
pub(crate) const NOT_A_CALL: u64 = 0;

/// Why a remote call got no value back, as the replying node says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Refusal {
    /// No process is exported under that name there.
    NoSuchName = 1,
    /// The process's message type could not read the request (another version of it).
    BadMessage = 2,
    /// The process dropped the reply port without answering, or could not encode the reply.
    NoReply = 3,
    /// The process has stopped.
    Stopped = 4,
    /// The process takes another message type: refused before decoding.
    WrongType = 5,
    /// The process's handler of that call answers another reply type than the caller
    /// expects: refused before the handler ran.
    WrongReplyType = 6,
    /// The process has as many messages from other nodes waiting as it may
    /// ([`crate::node::NodeConfig::max_remote_queued`]): the request was dropped unhandled.
    Overloaded = 7,
}

impl Refusal {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::NoSuchName,
            2 => Self::BadMessage,
            3 => Self::NoReply,
            4 => Self::Stopped,
            5 => Self::WrongType,
            6 => Self::WrongReplyType,
            7 => Self::Overloaded,
            _ => return None,
        })
    }

    /// Whether the refusal names the refusing process's type.
    fn names_a_type(self) -> bool {
        matches!(self, Self::WrongType | Self::WrongReplyType)
    }
}

/// A call's answer: the reply's bytes, or why there is none and, for a wrong type, the
/// wire name of the refusing process's type (its message type, or its reply type for the
/// call); empty for the other refusals.
pub(crate) type Answer = Result<Vec<u8>, (Refusal, String)>;

/// One item of a frame, borrowed from the frame's bytes.
#[derive(Debug, PartialEq)]
pub(crate) enum Item<'a> {
    /// The first item of a lane: who opens it, the token the receiving node gave it, the
    /// channel the lane carries and which of that channel's lanes it is.
    Hello {
        token: u128,
        node: &'a str,
        incarnation: u64,
        channel: &'a str,
        lane: u64,
    },
    /// A message of type `ty` (a [`wire_id`]) for the process exported as `name`.
    ///
    /// [`wire_id`]: foundation_actors::remote::wire_id
    Cast {
        name: &'a str,
        ctx: Option<Context>,
        ty: u64,
        msg: &'a [u8],
    },
    /// A request of type `ty` for the process exported as `name`, whose caller expects a
    /// reply of type `reply` (or [`NOT_A_CALL`]); the answer comes back as a
    /// [`Item::Reply`] with the same `id` on the other direction's lane.
    Call {
        id: u64,
        name: &'a str,
        ctx: Option<Context>,
        ty: u64,
        reply: u64,
        msg: &'a [u8],
    },
    /// The answer to call `id`: as [`Answer`], borrowed.
    Reply {
        id: u64,
        result: Result<&'a [u8], (Refusal, &'a str)>,
    },
    /// Nothing to say; proves the sender alive.
    Heartbeat,
    /// The sender is leaving the cluster gracefully.
    Leave,
}

/// Why bytes from a lane do not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame announces more bytes than the lane accepts.
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    Oversized {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An item kind this version does not know.
    #[error("unknown item kind {0}")]
    UnknownKind(u8),
    /// The item ends before its fields do.
    #[error("item truncated while reading {0}")]
    Truncated(&'static str),
    /// A field holds a value it cannot hold.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// Appends an item to `out`.
pub(crate) fn put_item(out: &mut Vec<u8>, item: &Item<'_>) {
    match item {
        Item::Hello {
            token,
            node,
            incarnation,
            channel,
            lane,
        } => {
            out.push(HELLO);
            out.extend_from_slice(&token.to_le_bytes());
            put_bytes(out, node.as_bytes());
            put_varint(out, *incarnation);
            put_bytes(out, channel.as_bytes());
            put_varint(out, *lane);
        }
        Item::Cast { name, ctx, ty, msg } => {
            out.push(CAST);
            put_bytes(out, name.as_bytes());
            put_ctx(out, ctx.as_ref());
            out.extend_from_slice(&ty.to_le_bytes());
            put_bytes(out, msg);
        }
        Item::Call {
            id,
            name,
            ctx,
            ty,
            reply,
            msg,
        } => {
            out.push(CALL);
            put_varint(out, *id);
            put_bytes(out, name.as_bytes());
            put_ctx(out, ctx.as_ref());
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&reply.to_le_bytes());
            put_bytes(out, msg);
        }
        Item::Reply { id, result } => {
            out.push(REPLY);
            put_varint(out, *id);
            match result {
                Ok(bytes) => {
                    out.push(0);
                    put_bytes(out, bytes);
                }
                Err((r, theirs)) => {
                    out.push(*r as u8);
                    if r.names_a_type() {
                        put_bytes(out, theirs.as_bytes());
                    }
                }
            }
        }
        Item::Heartbeat => out.push(HEARTBEAT),
        Item::Leave => out.push(LEAVE),
    }
}

/// Appends a cast item (a call item with `call`: its id and the reply type the caller
/// expects) whose message, of type `ty`, is encoded by `encode` straight into `out`,
/// without an intermediate buffer. On an encode error `out` is left as it was.
pub(crate) fn put_cast_with<E>(
    out: &mut Vec<u8>,
    call: Option<(u64, u64)>,
    name: &str,
    ctx: Option<&Context>,
    ty: u64,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let start = out.len();
    match call {
        None => out.push(CAST),
        Some((id, _)) => {
            out.push(CALL);
            put_varint(out, id);
        }
    }
    put_bytes(out, name.as_bytes());
    put_ctx(out, ctx);
    out.extend_from_slice(&ty.to_le_bytes());
    if let Some((_, reply)) = call {
        out.extend_from_slice(&reply.to_le_bytes());
    }
    // The message's length is not known before it is encoded: encode after a maximal
    // varint slot, then write the length and close the gap.
    let len_at = out.len();
    out.extend_from_slice(&[0; 5]);
    let body_at = out.len();
    if let Err(e) = encode(out) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - body_at;
    let mut tmp = Vec::with_capacity(5);
    put_varint(&mut tmp, len as u64);
    let gap = 5 - tmp.len();
    out[len_at..len_at + tmp.len()].copy_from_slice(&tmp);
    if gap > 0 {
        out.copy_within(body_at.., len_at + tmp.len());
        out.truncate(out.len() - gap);
    }
    Ok(())
}

/// Reads the next item from `buf`, advancing it.
pub(crate) fn take_item<'a>(buf: &mut &'a [u8]) -> Result<Item<'a>, FrameError> {
    let kind = take_u8(buf, "the item kind")?;
    Ok(match kind {
        HELLO => {
            let token = take_array::<16>(buf, "the hello token")?;
            Item::Hello {
                token: u128::from_le_bytes(token),
                node: take_str(buf, "the node name")?,
                incarnation: take_varint(buf, "the incarnation")?,
                channel: take_str(buf, "the channel name")?,
                lane: take_varint(buf, "the lane number")?,
            }
        }
        CAST => Item::Cast {
            name: take_str(buf, "the process name")?,
            ctx: take_ctx(buf)?,
            ty: take_u64(buf, "the message type")?,
            msg: take_bytes(buf, "the message")?,
        },
        CALL => Item::Call {
            id: take_varint(buf, "the call id")?,
            name: take_str(buf, "the process name")?,
            ctx: take_ctx(buf)?,
            ty: take_u64(buf, "the message type")?,
            reply: take_u64(buf, "the reply type")?,
            msg: take_bytes(buf, "the message")?,
        },
        REPLY => {
            let id = take_varint(buf, "the call id")?;
            let status = take_u8(buf, "the reply status")?;
            let result = if status == 0 {
                Ok(take_bytes(buf, "the reply")?)
            } else {
                let r = Refusal::from_u8(status).ok_or(FrameError::Malformed("reply status"))?;
                let theirs = if r.names_a_type() {
                    take_str(buf, "the refusing type's name")?
                } else {
                    ""
                };
                Err((r, theirs))
            };
            Item::Reply { id, result }
        }
        HEARTBEAT => Item::Heartbeat,
        LEAVE => Item::Leave,
        other => return Err(FrameError::UnknownKind(other)),
    })
}

/// The body length announced by a frame header, checked against `max`.
pub(crate) fn body_len(header: [u8; HEADER], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(FrameError::Oversized { len, max });
    }
    Ok(len)
}

fn put_ctx(out: &mut Vec<u8>, ctx: Option<&Context>) {
    match ctx {
        None => out.push(0),
        Some(ctx) => {
            out.push(1);
            // A context always encodes: its fields are plain data with bounded sizes.
            let bytes = postcard::to_stdvec(ctx).unwrap_or_default();
            put_bytes(out, &bytes);
        }
    }
}

fn take_ctx(buf: &mut &[u8]) -> Result<Option<Context>, FrameError> {
    match take_u8(buf, "the context flag")? {
        0 => Ok(None),
        1 => {
            let bytes = take_bytes(buf, "the context")?;
            postcard::from_bytes(bytes)
                .map(Some)
                .map_err(|_| FrameError::Malformed("context"))
        }
        _ => Err(FrameError::Malformed("context flag")),
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn take_u8(buf: &mut &[u8], what: &'static str) -> Result<u8, FrameError> {
    let (&b, rest) = buf.split_first().ok_or(FrameError::Truncated(what))?;
    *buf = rest;
    Ok(b)
}

fn take_array<const N: usize>(buf: &mut &[u8], what: &'static str) -> Result<[u8; N], FrameError> {
    let (head, rest) = buf.split_at_checked(N).ok_or(FrameError::Truncated(what))?;
    *buf = rest;
    let mut a = [0; N];
    a.copy_from_slice(head);
    Ok(a)
}

fn take_u64(buf: &mut &[u8], what: &'static str) -> Result<u64, FrameError> {
    take_array::<8>(buf, what).map(u64::from_le_bytes)
}

fn take_varint(buf: &mut &[u8], what: &'static str) -> Result<u64, FrameError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = take_u8(buf, what)?;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            if shift == 63 && b > 1 {
                return Err(FrameError::Malformed(what));
            }
            return Ok(v);
        }
    }
    Err(FrameError::Malformed(what))
}

fn take_bytes<'a>(buf: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], FrameError> {
    let len = take_varint(buf, what)?;
    let len = usize::try_from(len).map_err(|_| FrameError::Truncated(what))?;
    let (head, rest) = buf
        .split_at_checked(len)
        .ok_or(FrameError::Truncated(what))?;
    *buf = rest;
    Ok(head)
}

fn take_str<'a>(buf: &mut &'a [u8], what: &'static str) -> Result<&'a str, FrameError> {
    std::str::from_utf8(take_bytes(buf, what)?).map_err(|_| FrameError::Malformed(what))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::*;

    fn all_items(ctx: &Context) -> Vec<Item<'static>> {
        vec![
            Item::Hello {
                token: u128::MAX - 7,
                node: "node-a",
                incarnation: 1_700_000_000_000_000,
                channel: "control",
                lane: 3,
            },
            Item::Cast {
                name: "kv",
                ctx: None,
                ty: 0x0102_0304_0506_0708,
                msg: b"\x01hello",
            },
            Item::Cast {
                name: "kv",
                ctx: Some(ctx.clone()),
                ty: u64::MAX,
                msg: &[],
            },
            Item::Call {
                id: u64::MAX,
                name: "k\u{e9}v",
                ctx: Some(ctx.clone()),
                ty: 7,
                reply: NOT_A_CALL,
                msg: &[0; 300],
            },
            Item::Reply {
                id: 3,
                result: Ok(b"ok"),
            },
            Item::Reply {
                id: 4,
                result: Err((Refusal::NoSuchName, "")),
            },
            Item::Reply {
                id: 5,
                result: Err((Refusal::WrongType, "test.Probe")),
            },
            Item::Reply {
                id: 6,
                result: Err((Refusal::WrongReplyType, "Option<u64>")),
            },
            Item::Heartbeat,
            Item::Leave,
        ]
    }

    #[test]
    fn items_round_trip_back_to_back() {
        let ctx = Context::new()
            .with_request_id("req-1")
            .with_baggage("k", "v");
        let items = all_items(&ctx);
        let mut buf = Vec::new();
        for item in &items {
            put_item(&mut buf, item);
        }
        let mut rest = &buf[..];
        for item in &items {
            let got = take_item(&mut rest).unwrap();
            match (&got, item) {
                // A context's deadline is re-based on arrival; compare what travels.
                (Item::Call { ctx: Some(a), .. }, Item::Call { ctx: Some(b), .. })
                | (Item::Cast { ctx: Some(a), .. }, Item::Cast { ctx: Some(b), .. }) => {
                    assert_eq!(a.trace_id(), b.trace_id());
                    assert_eq!(a.request_id(), Some("req-1"));
                    assert_eq!(a.baggage("k"), Some("v"));
                }
                _ => assert_eq!(&got, item),
            }
        }
        assert!(rest.is_empty());
    }

    #[test]
    fn a_cast_encoded_in_place_equals_one_put_whole_at_every_length() {
        for len in [0, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let msg = vec![7u8; len];
            let mut a = b"prefix".to_vec();
            put_cast_with::<()>(&mut a, Some((9, 11)), "n", None, 10, |out| {
                out.extend_from_slice(&msg);
                Ok(())
            })
            .unwrap();
            let mut b = b"prefix".to_vec();
            put_item(
                &mut b,
                &Item::Call {
                    id: 9,
                    name: "n",
                    ctx: None,
                    ty: 10,
                    reply: 11,
                    msg: &msg,
                },
            );
            assert_eq!(a, b, "len {len}");
            let mut a = Vec::new();
            put_cast_with::<()>(&mut a, None, "n", None, 10, |out| {
                out.extend_from_slice(&msg);
                Ok(())
            })
            .unwrap();
            let mut b = Vec::new();
            put_item(
                &mut b,
                &Item::Cast {
                    name: "n",
                    ctx: None,
                    ty: 10,
                    msg: &msg,
                },
            );
            assert_eq!(a, b, "len {len}");
        }
    }

    #[test]
    fn a_failed_encode_leaves_the_buffer_as_it_was() {
        let mut out = b"earlier items".to_vec();
        let r = put_cast_with(&mut out, None, "n", None, 1, |out| {
            out.extend_from_slice(b"half");
            Err("no")
        });
        assert_eq!(r, Err("no"));
        assert_eq!(out, b"earlier items");
    }

    #[test]
    fn every_truncation_and_random_bytes_are_errors_not_panics() {
        let ctx = Context::new();
        let mut buf = Vec::new();
        for item in &all_items(&ctx) {
            put_item(&mut buf, item);
        }
        // Every strict prefix of each item fails or parses fewer items; none panics.
        for cut in 0..buf.len() {
            let mut rest = &buf[..cut];
            while !rest.is_empty() {
                if take_item(&mut rest).is_err() {
                    break;
                }
            }
        }
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let len = rng.usize(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                if take_item(&mut rest).is_err() {
                    break;
                }
            }
        }
        assert_eq!(
            take_item(&mut &[99u8][..]),
            Err(FrameError::UnknownKind(99))
        );
        // A huge length prefix is refused without allocating.
        let mut huge = vec![CAST];
        put_varint(&mut huge, u64::MAX);
        assert!(matches!(
            take_item(&mut &huge[..]),
            Err(FrameError::Truncated(_))
        ));
    }

    /// The layout peers of other versions read: a change here is a change of protocol.
    #[test]
    fn a_cast_and_a_call_carry_their_types_before_the_message() {
        let mut buf = Vec::new();
        put_item(
            &mut buf,
            &Item::Cast {
                name: "kv",
                ctx: None,
                ty: 0x0807_0605_0403_0201,
                msg: &[9],
            },
        );
        assert_eq!(buf, [CAST, 2, b'k', b'v', 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 9]);
        let mut buf = Vec::new();
        put_item(
            &mut buf,
            &Item::Call {
                id: 5,
                name: "kv",
                ctx: None,
                ty: 1,
                reply: 2,
                msg: &[9],
            },
        );
        let mut want = vec![CALL, 5, 2, b'k', b'v', 0];
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&2u64.to_le_bytes());
        want.extend_from_slice(&[1, 9]);
        assert_eq!(buf, want);
        let mut buf = Vec::new();
        put_item(
            &mut buf,
            &Item::Reply {
                id: 5,
                result: Err((Refusal::WrongType, "kv")),
            },
        );
        assert_eq!(buf, [REPLY, 5, 5, 2, b'k', b'v']);
        // The other refusals are their status alone.
        let mut buf = Vec::new();
        put_item(
            &mut buf,
            &Item::Reply {
                id: 5,
                result: Err((Refusal::NoReply, "")),
            },
        );
        assert_eq!(buf, [REPLY, 5, 3]);
    }

    #[test]
    fn an_oversized_header_is_refused_before_reading_the_body() {
        assert_eq!(body_len(16u32.to_le_bytes(), 16), Ok(16));
        assert_eq!(
            body_len(u32::MAX.to_le_bytes(), DEFAULT_MAX_FRAME),
            Err(FrameError::Oversized {
                len: u32::MAX as usize,
                max: DEFAULT_MAX_FRAME
            })
        );
    }
}
