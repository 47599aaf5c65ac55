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
//! Renaming a variant or a field, or reordering variants, changes nothing on the wire.
//! Adding, removing or reordering a variant's *fields* does: give the new shape a new tag
//! and keep the old one while peers still send it. Fields need serde's `Serialize` and
//! `Deserialize`; the message type itself needs neither.
//!
//! Decoding never panics: an unknown tag, truncated or malformed bytes and trailing bytes
//! each give a [`WireError`] that names the type and the tag.
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
    /// [`WireError::Encode`] if a field's `Serialize` impl fails.
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
    /// The bytes end early or do not match the fields' types.
    #[error("malformed `{type_name}`{}: {source}", tag_suffix(*tag))]
    Malformed {
        /// The type's wire name.
        type_name: &'static str,
        /// The variant's tag, if it was read.
        tag: Option<u32>,
        /// What postcard found.
        #[source]
        source: postcard::Error,
    },
    /// A whole value was read and bytes were left over.
    #[error("{extra} bytes left over after a `{type_name}`{}", tag_suffix(*tag))]
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

    /// Appends the fields (a tuple of references).
    pub fn put<F: Serialize>(
        out: &mut Vec<u8>,
        fields: &F,
        type_name: &'static str,
        tag: Option<u32>,
    ) -> Result<(), WireError> {
        let buf = std::mem::take(out);
        match postcard::to_extend(fields, buf) {
            Ok(buf) => {
                *out = buf;
                Ok(())
            }
            Err(source) => Err(WireError::Encode {
                type_name,
                tag,
                source,
            }),
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
