//! Remote-able messages: a stable wire form with an explicit tag per variant.
//!
//! `#[derive(RemoteMessage)]` implements [`RemoteMessage`] for an enum or a struct. Its
//! wire form is postcard, but not serde's derive of the whole type: serde numbers enum
//! variants by their position, so reordering variants would silently change what peers
//! read. Instead each variant carries the tag written on it:
//!
//! ```text
//! enum:   varint(tag) · postcard(field 1, field 2, …)
//! struct: postcard(field 1, field 2, …)
//! ```
//!
//! Fields need serde's `Serialize` and `Deserialize`; the message type itself needs
//! neither.
//!
//! # Compatibility
//!
//! Peers see a variant's tag, never its name, and its fields by position, never by name.
//! So renaming a variant, renaming a field, and reordering variants all keep the bytes
//! the same: an old peer and a new one understand each other.
//!
//! A variant's fields are written in declaration order, without names, so adding,
//! removing, retyping or reordering them changes its wire form. The other side's decode
//! may then fail (truncated or trailing bytes), or may not: swap two fields of the same
//! type and each decodes as the other, silently. Give the new shape a new tag, and keep
//! the old variant while peers still send it. The same holds for a struct's fields, which have no tag to change: give the
//! new shape a new type (and a new `#[remote(name = "…")]`).
//!
//! # Hostile input
//!
//! Bytes from a peer are checked, not trusted: an unknown tag, truncated or malformed
//! bytes and trailing bytes each give a [`WireError`] that names the type and the tag,
//! never a panic. A string, byte string or `Vec` whose length prefix claims more than
//! the input holds is refused before anything is allocated for it. Maps and sets are
//! the exception: serde lets them preallocate up to about 1 MiB of entries whatever
//! their prefix says (a `HashMap`'s table for that is about 2 MiB), before the input
//! runs out and the decode fails.
//!
//! postcard has no depth limit. A field type that contains itself (an expression tree
//! through `Box`, a JSON-like value through `Vec`) is decoded by recursion, one level
//! per byte or so of input, and hostile input nested deep enough overflows the stack,
//! which aborts the process: no error, no panic to catch. On a tokio worker's 2 MiB
//! stack a few tens of kilobytes of nesting are enough. Keep remote messages flat, or
//! bound the size of the frames they arrive in (foundation-cluster limits frame sizes).
//!
//! # Examples
//!
//! ```
//! use foundation_actors::remote::{RemoteMessage, WireError};
//!
//! #[derive(Debug, PartialEq, RemoteMessage)]
//! enum Command {
//!     #[remote(tag = 1)]
//!     Put { key: String, value: Vec<u8> },
//!     #[remote(tag = 2)]
//!     Get(String),
//!     #[remote(tag = 7)]
//!     Ping,
//! }
//!
//! let put = Command::Put { key: "k".into(), value: vec![1, 2] };
//! let bytes = put.to_bytes()?;
//! assert_eq!(bytes[0], 1); // the tag, then the fields
//! assert_eq!(Command::from_bytes(&bytes)?, put);
//!
//! let err = Command::from_bytes(&[9]).unwrap_err();
//! assert!(matches!(err, WireError::UnknownTag { tag: 9, .. }));
//! # Ok::<(), WireError>(())
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use foundation_macros::RemoteMessage;

/// A message with a stable wire form; derive it with `#[derive(RemoteMessage)]`.
pub trait RemoteMessage: Sized + Send + 'static {
    /// The type's wire name (`#[remote(name = "…")]`, or the Rust name): how errors and
    /// peers name it.
    const TYPE_NAME: &'static str;
    /// Every tag this type knows, in declaration order (empty for a struct).
    const TAGS: &'static [u32];

    /// This value's tag (`None` for a struct).
    fn tag(&self) -> Option<u32>;

    /// Appends the wire form to `out`.
    ///
    /// # Errors
    ///
    /// [`WireError::Encode`] if a field's `Serialize` impl fails. `out` is then as it was
    /// (the same length and bytes), so a batch of messages in one buffer survives one that
    /// cannot be encoded.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError>;

    /// Reads a value from exactly `bytes`.
    ///
    /// # Errors
    ///
    /// [`WireError::UnknownTag`], [`WireError::Malformed`] or [`WireError::TrailingBytes`].
    fn from_bytes(bytes: &[u8]) -> Result<Self, WireError>;

    /// The wire form in a new buffer.
    ///
    /// # Errors
    ///
    /// As [`RemoteMessage::encode`].
    fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// Why a remote message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The tag is not one this type knows: the peer runs another version of it.
    #[error(
        "unknown wire tag {tag} for `{type_name}` (known: {known:?}): the peer runs a version of this message type that this node does not know"
    )]
    UnknownTag {
        /// The type's wire name.
        type_name: &'static str,
        /// The tag read.
        tag: u32,
        /// The tags this node knows.
        known: &'static [u32],
    },
    /// The bytes end early or do not match the fields' types, or an enum's input does not
    /// start with a tag.
    #[error("malformed `{type_name}`{}: {}", tag_suffix(*tag), malformed(*in_tag, source))]
    Malformed {
        /// The type's wire name.
        type_name: &'static str,
        /// The variant's tag, if it was read.
        tag: Option<u32>,
        /// Whether the tag itself could not be read: the input is empty, or does not start
        /// with a `u32` varint. `tag` is then `None`.
        in_tag: bool,
        /// What postcard found.
        #[source]
        source: postcard::Error,
    },
    /// A whole value was read and bytes were left over.
    #[error("{} left over after a `{type_name}`{}", byte_count(*extra), tag_suffix(*tag))]
    TrailingBytes {
        /// The type's wire name.
        type_name: &'static str,
        /// The variant's tag.
        tag: Option<u32>,
        /// How many bytes were left.
        extra: usize,
    },
    /// A field's `Serialize` impl failed.
    #[error("could not encode `{type_name}`{}: {source}", tag_suffix(*tag))]
    Encode {
        /// The type's wire name.
        type_name: &'static str,
        /// The variant's tag.
        tag: Option<u32>,
        /// What postcard reported.
        #[source]
        source: postcard::Error,
    },
}

fn tag_suffix(tag: Option<u32>) -> String {
    tag.map(|t| format!(" (tag {t})")).unwrap_or_default()
}

fn byte_count(n: usize) -> String {
    if n == 1 {
        "1 byte".to_owned()
    } else {
        format!("{n} bytes")
    }
}

/// What was wrong, in this crate's words where postcard's would mislead: its text for a
/// bad varint asks whether "the usize" is "too big for this platform".
fn malformed(in_tag: bool, source: &postcard::Error) -> String {
    use postcard::Error::{DeserializeBadVarint, DeserializeUnexpectedEnd};
    match (in_tag, source) {
        (true, DeserializeBadVarint) => "the wire tag is not a valid u32 varint".to_owned(),
        (true, DeserializeUnexpectedEnd) => "the input ends before the wire tag does".to_owned(),
        (false, DeserializeBadVarint) => {
            "a varint (an integer field or a length prefix) is too long for its type".to_owned()
        }
        _ => source.to_string(),
    }
}

/// A type a remote message's fields may have: anything serde can write and read back.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross the wire: fields of a remote message must implement serde's `Serialize` and `Deserialize`",
    label = "this field's type is not serializable",
    note = "derive them on the type: `#[derive(serde::Serialize, serde::Deserialize)]`, or use a type that has them"
)]
pub trait WireField: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> WireField for T {}

/// Support for the generated code; not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::{WireError, WireField};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// Compile-time check that a field type can cross the wire.
    pub const fn assert_field<T: WireField>() {}

    /// Appends a tag: an unsigned LEB128 varint, as postcard writes a `u32`.
    pub fn put_tag(out: &mut Vec<u8>, mut tag: u32) {
        while tag >= 0x80 {
            out.push((tag & 0x7f) as u8 | 0x80);
            tag >>= 7;
        }
        out.push(tag as u8);
    }

    /// Runs a generated encoder and, if it fails, truncates `out` back to where it
    /// started: what it appended before the failing field goes, what was there stays.
    #[inline]
    pub fn encode<M>(
        msg: &M,
        out: &mut Vec<u8>,
        codec: fn(&M, &mut Vec<u8>) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        let start = out.len();
        let result = codec(msg, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Appends a field; on an error, what it appended stays for [`encode`] to truncate.
    #[inline]
    pub fn put<F: Serialize + ?Sized>(
        out: &mut Vec<u8>,
        field: &F,
        type_name: &'static str,
        tag: Option<u32>,
    ) -> Result<(), WireError> {
        match postcard::to_extend(field, Tail(out)) {
            Ok(_) => Ok(()),
            Err(source) => Err(WireError::Encode {
                type_name,
                tag,
                source,
            }),
        }
    }

    /// Appends to a borrowed buffer. `postcard::to_extend` takes its writer by value and
    /// drops it on an error: a `Vec` moved in would take the caller's bytes with it.
    struct Tail<'a>(&'a mut Vec<u8>);

    impl Extend<u8> for Tail<'_> {
        #[inline]
        fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
            self.0.extend(bytes);
        }
    }

    /// Reads the tag at the front.
    pub fn take_tag<'a>(
        bytes: &'a [u8],
        type_name: &'static str,
    ) -> Result<(u32, &'a [u8]), WireError> {
        postcard::take_from_bytes::<u32>(bytes).map_err(|source| WireError::Malformed {
            type_name,
            tag: None,
            in_tag: true,
            source,
        })
    }

    /// Reads the fields (a tuple) from exactly `bytes`.
    pub fn take<F: DeserializeOwned>(
        bytes: &[u8],
        type_name: &'static str,
        tag: Option<u32>,
    ) -> Result<F, WireError> {
        match postcard::take_from_bytes::<F>(bytes) {
            Ok((fields, [])) => Ok(fields),
            Ok((_, rest)) => Err(WireError::TrailingBytes {
                type_name,
                tag,
                extra: rest.len(),
            }),
            Err(source) => Err(WireError::Malformed {
                type_name,
                tag,
                in_tag: false,
                source,
            }),
        }
    }

    /// The error for a tag no variant has.
    pub fn unknown_tag(type_name: &'static str, tag: u32, known: &'static [u32]) -> WireError {
        WireError::UnknownTag {
            type_name,
            tag,
            known,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::__private::{put_tag, take_tag};

    #[test]
    fn tags_are_postcard_varints() {
        for tag in [0, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut ours = Vec::new();
            put_tag(&mut ours, tag);
            let theirs = postcard::to_allocvec(&tag).expect("a u32 encodes");
            assert_eq!(ours, theirs, "tag {tag}");
            assert_eq!(take_tag(&ours, "T").expect("reads back"), (tag, &[][..]));
        }
    }
}
