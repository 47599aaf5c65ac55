//! W3C Trace Context's `traceparent` header, read into a [`Context`] and written from one.
//!
//! ```text
//! traceparent = version "-" trace-id "-" parent-id "-" trace-flags
//!               2 hex     32 hex       16 hex        2 hex          (lowercase)
//! ```
//!
//! Version `00` is exactly these 55 characters. A later version may add fields after the
//! flags, each after a `-`: its first four are read as version `00`'s, as the spec asks of
//! a reader that meets a version it does not know. Version `ff` is invalid, and so is an
//! all-zero trace id or parent id.

use std::fmt;

use super::{Context, SAMPLED, SpanId, TraceId};

/// Length of a version-`00` header, and the least any version may have.
const LEN: usize = 55;

/// Where each field starts and ends, and each `-` sits.
const VERSION: std::ops::Range<usize> = 0..2;
const TRACE_ID: std::ops::Range<usize> = 3..35;
const PARENT_ID: std::ops::Range<usize> = 36..52;
const FLAGS: std::ops::Range<usize> = 53..55;
const DASHES: [usize; 3] = [2, 35, 52];

/// A field of a `traceparent` header, as a [`TraceparentError`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceparentField {
    /// The version, 2 hex digits.
    Version,
    /// The trace id, 32 hex digits.
    TraceId,
    /// The parent id (the caller's span id), 16 hex digits.
    ParentId,
    /// The trace flags, 2 hex digits.
    Flags,
}

impl fmt::Display for TraceparentField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Version => "version",
            Self::TraceId => "trace id",
            Self::ParentId => "parent id",
            Self::Flags => "flags",
        })
    }
}

/// A `traceparent` header that [`Context::from_traceparent`] refused. W3C Trace Context
/// asks a service that gets one to start a trace of its own ([`Context::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceparentError {
    /// Shorter than 55 characters, or longer for version `00`, which has exactly four
    /// fields.
    #[error(
        "a traceparent is 55 characters (version 00: exactly; a later version: at least); this one has {len}"
    )]
    Length {
        /// The header's length, in bytes, without the spaces and tabs around it.
        len: usize,
    },
    /// No `-` where one separates two fields, or a later version's flags followed by
    /// something else than a `-`.
    #[error(
        "a traceparent is `version-traceid-parentid-flags`: 2, 32, 16 and 2 hex digits separated by '-'"
    )]
    Fields,
    /// A field with a character that is not a lowercase hex digit (`0`-`9`, `a`-`f`).
    #[error("the {0} of a traceparent is lowercase hex digits only")]
    NotHex(TraceparentField),
    /// An all-zero trace id or parent id.
    #[error("the {0} of a traceparent is all zeros, which W3C Trace Context makes invalid")]
    ZeroId(TraceparentField),
    /// Version `ff`, which W3C Trace Context makes invalid.
    #[error("traceparent version ff is invalid")]
    InvalidVersion,
}

/// The value of lowercase hex digits `digits` (at most 32 of them), or which field is not.
fn hex(digits: &[u8], field: TraceparentField) -> Result<u128, TraceparentError> {
    digits.iter().try_fold(0u128, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return Err(TraceparentError::NotHex(field)),
        };
        Ok((acc << 4) | u128::from(d))
    })
}

/// The trace id, parent id and flags of a header.
fn parse(header: &str) -> Result<(TraceId, SpanId, u8), TraceparentError> {
    use TraceparentField as F;
    // HTTP's optional whitespace around a value: not part of it.
    let h = header.trim_matches([' ', '\t']).as_bytes();
    if h.len() < LEN {
        return Err(TraceparentError::Length { len: h.len() });
    }
    let version = hex(&h[VERSION], F::Version)?;
    if version == 0xff {
        return Err(TraceparentError::InvalidVersion);
    }
    if DASHES.iter().any(|&i| h[i] != b'-') {
        return Err(TraceparentError::Fields);
    }
    let trace_id = hex(&h[TRACE_ID], F::TraceId)?;
    // 16 and 2 hex digits: the casts lose nothing.
    let parent_id = hex(&h[PARENT_ID], F::ParentId)? as u64;
    let flags = hex(&h[FLAGS], F::Flags)? as u8;
    match h.get(LEN) {
        None => {}
        Some(_) if version == 0 => return Err(TraceparentError::Length { len: h.len() }),
        // A later version's fields after the flags: not read.
        Some(b'-') => {}
        Some(_) => return Err(TraceparentError::Fields),
    }
    if trace_id == 0 {
        return Err(TraceparentError::ZeroId(F::TraceId));
    }
    if parent_id == 0 {
        return Err(TraceparentError::ZeroId(F::ParentId));
    }
    Ok((TraceId(trace_id), SpanId(parent_id), flags))
}

impl Context {
    /// The context of a request that came in with a W3C [`traceparent`] header: it
    /// continues the caller's trace.
    ///
    /// The context has the header's trace id and sampled flag, the header's parent id (the
    /// caller's span) as its [`parent_span`](Context::parent_span), and a fresh span id of
    /// its own, as [`Context::child`] gives the next hop; nothing else is set. A version
    /// after `00` is read as the spec asks: its first four fields as version `00`'s, the
    /// rest ignored. Spaces and tabs around the value are ignored. Flags other than sampled
    /// are not kept. Pass a `tracestate` header on with [`Context::with_tracestate`].
    ///
    /// [`traceparent`]: https://www.w3.org/TR/trace-context/#traceparent-header
    ///
    /// # Errors
    ///
    /// A [`TraceparentError`] for a header that is not a valid `traceparent`: the wrong
    /// length or fields, a character other than a lowercase hex digit, an all-zero trace
    /// id or parent id, or version `ff`. The spec's answer to one is a new trace
    /// ([`Context::new`]).
    ///
    /// # Panics
    ///
    /// Never, whatever the input.
    ///
    /// # Examples
    ///
    /// A request comes in over HTTP, an actor handles it, and the call it makes to another
    /// service carries the trace on:
    ///
    /// ```
    /// use foundation_actors::prelude::*;
    ///
    /// #[derive(Clone)]
    /// struct Frontend;
    /// enum Msg {
    ///     /// Answers the `traceparent` of the HTTP call this actor would make next.
    ///     Outgoing(ReplyPort<String>),
    /// }
    ///
    /// impl Actor for Frontend {
    ///     type Msg = Msg;
    ///     type State = ();
    ///     type Args = ();
    ///     async fn init(&self, _: &Addr<Msg>, _: ()) -> Result<(), ActorError> { Ok(()) }
    ///     async fn handle(&self, _: &Addr<Msg>, msg: Msg, _: &mut ()) -> Result<(), ActorError> {
    ///         let Msg::Outgoing(reply) = msg;
    ///         let ctx = Context::current().unwrap_or_default();
    ///         let _ = reply.send(ctx.traceparent());
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let frontend = spawn(Frontend, ()).await?;
    ///
    /// // The header of the request that came in.
    /// let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// let ctx = Context::from_traceparent(incoming).unwrap_or_else(|_| Context::new());
    /// assert_eq!(ctx.parent_span().map(|s| s.to_string()).as_deref(), Some("00f067aa0ba902b7"));
    ///
    /// let outgoing = ctx.scope(frontend.call(Msg::Outgoing)).await?;
    /// // Same trace, sampled; the parent the next service sees is the actor's own span.
    /// assert!(outgoing.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    /// assert!(outgoing.ends_with("-01"));
    /// assert_ne!(&outgoing[36..52], "00f067aa0ba902b7");
    /// # Ok(()) }
    /// ```
    pub fn from_traceparent(header: &str) -> Result<Self, TraceparentError> {
        let (trace_id, parent_id, flags) = parse(header)?;
        Ok(Self::continuing(
            trace_id,
            Some(parent_id),
            flags & SAMPLED != 0,
        ))
    }

    /// This context as a W3C [`traceparent`] header value, for a request that goes out to
    /// another service: version `00`, this context's trace id, its own span id as the
    /// parent id, and the sampled flag (`01` or `00`).
    ///
    /// Send [`Context::tracestate`], if any, beside it as the `tracestate` header.
    ///
    /// [`traceparent`]: https://www.w3.org/TR/trace-context/#traceparent-header
    ///
    /// # Examples
    ///
    /// ```
    /// use foundation_actors::Context;
    ///
    /// let ctx = Context::new();
    /// let header = ctx.traceparent();
    /// assert_eq!(header, format!("00-{}-{}-01", ctx.trace_id(), ctx.span_id()));
    ///
    /// // The service that gets it continues the trace under this context's span.
    /// let theirs = Context::from_traceparent(&header)?;
    /// assert_eq!(theirs.trace_id(), ctx.trace_id());
    /// assert_eq!(theirs.parent_span(), Some(ctx.span_id()));
    /// # Ok::<(), foundation_actors::TraceparentError>(())
    /// ```
    pub fn traceparent(&self) -> String {
        let flags = if self.is_sampled() { SAMPLED } else { 0 };
        format!("00-{}-{}-{flags:02x}", self.trace_id(), self.span_id())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::{Context, SpanId, TraceId, TraceparentError as E, TraceparentField as F};

    /// The example of the W3C Trace Context spec.
    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const TRACE: TraceId = TraceId(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
    const PARENT: SpanId = SpanId(0x00f0_67aa_0ba9_02b7);

    /// `EXAMPLE` with `with` in place of the characters at `at..`.
    fn example_with(at: usize, with: &str) -> String {
        let mut h = EXAMPLE.to_owned();
        h.replace_range(at..at + with.len(), with);
        h
    }

    #[test]
    fn the_specs_example_continues_its_trace_and_round_trips() {
        let ctx = Context::from_traceparent(EXAMPLE).unwrap();
        assert_eq!(ctx.trace_id(), TRACE);
        assert_eq!(ctx.parent_span(), Some(PARENT));
        assert_ne!(ctx.span_id(), PARENT, "a span id of its own");
        assert!(ctx.is_sampled());
        assert_eq!(ctx.request_id(), None);
        assert_eq!(ctx.deadline(), None);
        assert_eq!(ctx.baggage_items().count(), 0);
        assert_eq!(ctx.tracestate(), None);

        let out = ctx.traceparent();
        assert_eq!(
            out,
            format!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-{:016x}-01",
                ctx.span_id().0
            )
        );
        let next = Context::from_traceparent(&out).unwrap();
        assert_eq!(next.trace_id(), TRACE);
        assert_eq!(next.parent_span(), Some(ctx.span_id()));

        // The next hop inside Foundation keeps the trace and the flag, as for a new context.
        let child = ctx.child();
        assert_eq!(child.trace_id(), TRACE);
        assert_eq!(child.parent_span(), Some(ctx.span_id()));
        assert!(child.is_sampled());
    }

    #[test]
    fn uppercase_and_other_non_hex_characters_are_refused() {
        let cases = [
            (example_with(0, "0A"), F::Version),
            (example_with(3, "4BF9"), F::TraceId),
            (example_with(34, "G"), F::TraceId),
            (example_with(36, "00F067AA"), F::ParentId),
            (example_with(51, " "), F::ParentId),
            (example_with(53, "0A"), F::Flags),
            (example_with(54, "+"), F::Flags),
            (example_with(10, "é"), F::TraceId),
        ];
        for (header, field) in cases {
            assert_eq!(
                Context::from_traceparent(&header).unwrap_err(),
                E::NotHex(field),
                "{header}"
            );
        }
    }

    #[test]
    fn all_zero_ids_are_refused() {
        let zero_trace = example_with(3, &"0".repeat(32));
        assert_eq!(
            Context::from_traceparent(&zero_trace).unwrap_err(),
            E::ZeroId(F::TraceId)
        );
        let zero_parent = example_with(36, &"0".repeat(16));
        assert_eq!(
            Context::from_traceparent(&zero_parent).unwrap_err(),
            E::ZeroId(F::ParentId)
        );
        // Zero flags are fine: not sampled.
        let ctx = Context::from_traceparent(&example_with(53, "00")).unwrap();
        assert!(!ctx.is_sampled());
        assert!(ctx.traceparent().ends_with("-00"));
    }

    #[test]
    fn version_ff_is_refused() {
        assert_eq!(
            Context::from_traceparent(&example_with(0, "ff")).unwrap_err(),
            E::InvalidVersion
        );
        let longer = format!("{}-more", example_with(0, "ff"));
        assert_eq!(
            Context::from_traceparent(&longer).unwrap_err(),
            E::InvalidVersion
        );
    }

    #[test]
    fn a_later_version_is_read_by_its_first_four_fields() {
        let later = example_with(0, "01");
        for header in [
            later.clone(),
            format!("{later}-what-the-future-will-be-like"),
        ] {
            let ctx = Context::from_traceparent(&header).unwrap();
            assert_eq!(ctx.trace_id(), TRACE, "{header}");
            assert_eq!(ctx.parent_span(), Some(PARENT), "{header}");
            assert!(ctx.is_sampled());
            // What goes out is the version this side writes.
            assert!(ctx.traceparent().starts_with("00-"));
        }
        // After the flags, only a '-' may follow.
        assert_eq!(
            Context::from_traceparent(&format!("{later}.what")).unwrap_err(),
            E::Fields
        );
        assert_eq!(
            Context::from_traceparent(&format!("{later}0")).unwrap_err(),
            E::Fields
        );
        // A later version's flags: only the sampled bit is read.
        let ctx = Context::from_traceparent(&example_with(0, "cc").replace("-01", "-fe")).unwrap();
        assert!(!ctx.is_sampled());
    }

    #[test]
    fn version_00_has_exactly_four_fields() {
        for extra in ["-", "-what", ".", "0", " x"] {
            let header = format!("{EXAMPLE}{extra}");
            assert_eq!(
                Context::from_traceparent(&header).unwrap_err(),
                E::Length { len: header.len() },
                "{header:?}"
            );
        }
    }

    #[test]
    fn flags_keep_only_the_sampled_bit() {
        for (flags, sampled) in [
            ("00", false),
            ("01", true),
            ("02", false),
            ("03", true),
            ("ff", true),
        ] {
            let ctx = Context::from_traceparent(&example_with(53, flags)).unwrap();
            assert_eq!(ctx.is_sampled(), sampled, "{flags}");
            let out = if sampled { "-01" } else { "-00" };
            assert!(ctx.traceparent().ends_with(out), "{flags}");
        }
    }

    #[test]
    fn garbage_empty_and_oversized_headers_are_refused() {
        let oversized = format!("{EXAMPLE}{}", "0".repeat(100_000));
        let cases: &[(&str, E)] = &[
            ("", E::Length { len: 0 }),
            ("   \t ", E::Length { len: 0 }),
            ("hello", E::Length { len: 5 }),
            (&EXAMPLE[..54], E::Length { len: 54 }),
            (
                &oversized,
                E::Length {
                    len: oversized.len(),
                },
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                E::Fields,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01",
                E::Fields,
            ),
            (
                "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                E::NotHex(F::Version),
            ),
            (
                "-00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                E::NotHex(F::Version),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-",
                E::NotHex(F::Flags),
            ),
        ];
        for (header, err) in cases {
            assert_eq!(
                Context::from_traceparent(header).unwrap_err(),
                *err,
                "{:?}",
                header.get(..80).unwrap_or(header)
            );
        }
        assert!(Context::from_traceparent(&"x".repeat(1 << 20)).is_err());
        // HTTP's optional whitespace around a value is not part of it.
        let ctx = Context::from_traceparent(&format!(" \t{EXAMPLE}\t ")).unwrap();
        assert_eq!(ctx.trace_id(), TRACE);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            E::NotHex(F::ParentId).to_string(),
            "the parent id of a traceparent is lowercase hex digits only"
        );
        assert!(E::Length { len: 3 }.to_string().contains("this one has 3"));
        assert!(E::ZeroId(F::TraceId).to_string().contains("trace id"));
    }

    /// Random strings, most of them near a valid header, never panic; whatever is accepted
    /// writes a header that reads back to the same trace.
    #[test]
    fn no_input_panics() {
        const ALPHABET: &[char] = &[
            '0',
            '1',
            '9',
            'a',
            'f',
            'F',
            'g',
            '-',
            ' ',
            '\t',
            '.',
            'é',
            '\u{1F600}',
            '\0',
        ];
        let mut rng = fastrand::Rng::with_seed(0x7ace);
        let mut accepted = 0;
        for round in 0..50_000 {
            let header: String = match round % 3 {
                // Random characters of any length around the header's.
                0 => (0..rng.usize(0..120))
                    .map(|_| {
                        if rng.bool() {
                            ALPHABET[rng.usize(..ALPHABET.len())]
                        } else {
                            rng.char(..)
                        }
                    })
                    .collect(),
                // Random bytes, as an HTTP library would hand them over lossily.
                1 => {
                    let bytes: Vec<u8> = (0..rng.usize(0..80)).map(|_| rng.u8(..)).collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
                // The example with a few characters changed, cut short or added to.
                _ => {
                    let mut h: Vec<char> = EXAMPLE.chars().collect();
                    for _ in 0..rng.usize(1..4) {
                        let c = ALPHABET[rng.usize(..ALPHABET.len())];
                        match rng.u8(0..4) {
                            0 => h.truncate(rng.usize(..=h.len())),
                            1 => h.insert(rng.usize(..=h.len()), c),
                            _ if !h.is_empty() => {
                                let i = rng.usize(..h.len());
                                h[i] = c;
                            }
                            _ => {}
                        }
                    }
                    h.into_iter().collect()
                }
            };
            if let Ok(ctx) = Context::from_traceparent(&header) {
                accepted += 1;
                let back = Context::from_traceparent(&ctx.traceparent()).unwrap();
                assert_eq!(back.trace_id(), ctx.trace_id(), "{header:?}");
                assert_eq!(back.parent_span(), Some(ctx.span_id()), "{header:?}");
                assert_eq!(back.is_sampled(), ctx.is_sampled(), "{header:?}");
            }
        }
        assert!(accepted > 0, "some mutations keep the header valid");
    }
}
