//! Keys and values as bytes (postcard), with errors that say which type failed and why.
//!
//! postcard drops the message a type's `Serialize` impl gives `serde::ser::Error::custom`
//! (its error is a bare "Serde Serialization Error"). So when it reports one, the value is
//! serialized again, once, into [`Capture`]: a serializer that writes nothing and keeps
//! that message. The happy path pays nothing for it. (On the decoding side a
//! `Deserialize` impl's message is lost the same way, and getting it back would take a
//! second postcard decoder: the error says so instead.)

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde::ser;

use crate::error::CodecError;

/// `value`'s bytes; `what` (`"key"`, `"value"`) names it in the error.
pub(crate) fn encode<T: Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(value).map_err(|e| serialize_error(what, value, &e))
}

/// A `T` from all of `bytes`; `what` names it in the error.
pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(deserialize_error::<T>(
            what,
            format!("{} bytes left over after the value", rest.len()),
        )),
        Err(e) => Err(deserialize_error::<T>(what, decode_reason(&e))),
    }
}

/// The error for `value`, which postcard failed to serialize with `e`.
pub(crate) fn serialize_error<T: Serialize + ?Sized>(
    what: &'static str,
    value: &T,
    e: &postcard::Error,
) -> CodecError {
    let reason = match e {
        postcard::Error::SerdeSerCustom => match value.serialize(Capture) {
            Err(Captured(message)) => message,
            // Not deterministic: it failed once and not the second time.
            Ok(()) => "its `Serialize` impl failed (and gave no message the second time)".into(),
        },
        other => other.to_string(),
    };
    CodecError::Serialize {
        what,
        type_name: std::any::type_name::<T>(),
        reason,
    }
}

/// The error for bytes that did not decode as a `T`.
pub(crate) fn deserialize_error<T: ?Sized>(what: &'static str, reason: String) -> CodecError {
    CodecError::Deserialize {
        what,
        type_name: std::any::type_name::<T>(),
        reason,
    }
}

/// postcard's message for a decoding error, said plainly where postcard's is opaque.
pub(crate) fn decode_reason(e: &postcard::Error) -> String {
    match e {
        postcard::Error::SerdeDeCustom => {
            "the type's `Deserialize` impl refused the bytes (postcard does not keep its message)"
                .to_owned()
        }
        other => other.to_string(),
    }
}

/// The message a `Serialize` impl failed with.
#[derive(Debug)]
struct Captured(String);

impl std::fmt::Display for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Captured {}

impl ser::Error for Captured {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        Captured(msg.to_string())
    }
}

/// A serializer that writes nothing and keeps the first custom error: walks a value as
/// postcard does (not human-readable), to learn why its `Serialize` impl failed.
struct Capture;

macro_rules! nothing {
    ($($name:ident($ty:ty)),* $(,)?) => {
        $(fn $name(self, _: $ty) -> Result<(), Captured> { Ok(()) })*
    };
}

impl ser::Serializer for Capture {
    type Ok = ();
    type Error = Captured;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    nothing!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<(), Captured> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Captured> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Captured> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), Captured> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Captured> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Captured> {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Captured> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Captured> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Captured> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Captured> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Captured> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Captured> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Captured> {
        Ok(self)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

impl ser::SerializeSeq for Capture {
    type Ok = ();
    type Error = Captured;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Captured> {
        value.serialize(Capture)
    }
    fn end(self) -> Result<(), Captured> {
        Ok(())
    }
}

impl ser::SerializeTuple for Capture {
    type Ok = ();
    type Error = Captured;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Captured> {
        value.serialize(Capture)
    }
    fn end(self) -> Result<(), Captured> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Capture {
    type Ok = ();
    type Error = Captured;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Captured> {
        value.serialize(Capture)
    }
    fn end(self) -> Result<(), Captured> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Capture {
    type Ok = ();
    type Error = Captured;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Captured> {
        value.serialize(Capture)
    }
    fn end(self) -> Result<(), Captured> {
        Ok(())
    }
}

impl ser::SerializeMap for Capture {
    type Ok = ();
    type Error = Captured;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Captured> {
        key.serialize(Capture)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Captured> {
        value.serialize(Capture)
    }
    fn end(self) -> Result<(), Captured> {
        Ok(())
    }
}

impl ser::SerializeStruct for Capture {
    type Ok = ();
    type Error = Captured;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Captured> {
        value.serialize(Capture)
    }
    fn end(self) -> Result<(), Captured> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Capture {
    type Ok = ();
    type Error = Captured;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Captured> {
        value.serialize(Capture)
    }
    fn end(self) -> Result<(), Captured> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde::{Serialize, Serializer};

    use super::*;

    /// Fails, with a message, deep inside a struct in a vector.
    struct Refuses;

    impl Serialize for Refuses {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom("account 7 has no currency"))
        }
    }

    #[derive(Serialize)]
    struct Row {
        id: u32,
        parts: Vec<Option<Refuses>>,
    }

    #[test]
    fn a_serialize_impls_message_and_the_type_name_are_kept() {
        let row = Row {
            id: 1,
            parts: vec![None, Some(Refuses)],
        };
        let Err(e) = encode("value", &row) else {
            panic!("a row that cannot be written was written")
        };
        assert_eq!(
            e,
            CodecError::Serialize {
                what: "value",
                type_name: "foundation_cache::codec::tests::Row",
                reason: "account 7 has no currency".into(),
            }
        );
        assert_eq!(
            e.to_string(),
            "a value of type `foundation_cache::codec::tests::Row` failed to serialize: \
             account 7 has no currency"
        );
    }

    #[test]
    fn bytes_that_are_not_the_type_name_it_and_say_why() {
        let Err(e) = decode::<String>("value", &[5, b'a']) else {
            panic!("a string of 5 bytes decoded from 1")
        };
        assert_eq!(
            e.to_string(),
            "bytes of a value failed to deserialize as `alloc::string::String`: \
             Hit the end of buffer, expected more data"
        );
        let Err(e) = decode::<u8>("key", &[1, 2]) else {
            panic!("two bytes decoded as one")
        };
        assert_eq!(
            e.to_string(),
            "bytes of a key failed to deserialize as `u8`: 1 bytes left over after the value"
        );
    }
}
