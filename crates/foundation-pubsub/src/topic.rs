//! Topic names and patterns: validation and the typed [`Topic`] handle.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::TopicError;

/// The longest topic name or pattern, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;

/// The most segments (parts between dots) a topic name or pattern may have.
pub const MAX_SEGMENTS: usize = 32;

/// A topic carrying messages of type `T`, declared once so that every publish and
/// subscribe through it is checked at compile time.
///
/// A name is up to [`MAX_TOPIC_LEN`] bytes of dot-separated, non-empty segments
/// (`orders.created`). A *pattern* may also have `*` as a segment (exactly one segment)
/// and `#` as its last segment (zero or more segments): `orders.*` matches
/// `orders.created` but not `orders` or `orders.eu.created`; `orders.#` matches all three.
/// Patterns can be subscribed to, not published to.
///
/// Cheap to clone.
///
/// # Examples
///
/// ```
/// use foundation_pubsub::Topic;
///
/// let created: Topic<u64> = Topic::new("orders.created")?;
/// assert!(!created.is_pattern());
/// let all: Topic<u64> = Topic::new("orders.#")?;
/// assert!(all.is_pattern());
/// assert!(Topic::<u64>::new("orders..created").is_err());
/// # Ok::<(), foundation_pubsub::TopicError>(())
/// ```
pub struct Topic<T> {
    name: Arc<str>,
    pattern: bool,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            pattern: self.pattern,
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T> fmt::Display for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl<T> Topic<T> {
    /// A topic (or pattern) named `name`, carrying `T`.
    ///
    /// # Errors
    ///
    /// [`TopicError`] if the name is empty, longer than [`MAX_TOPIC_LEN`] bytes or
    /// [`MAX_SEGMENTS`] segments, has an empty segment, or misplaces a wildcard.
    pub fn new(name: &str) -> Result<Self, TopicError> {
        let pattern = validate(name, true)?;
        Ok(Self {
            name: Arc::from(name),
            pattern,
            _type: PhantomData,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it has a wildcard (`*` or `#`): then it can be subscribed to, not published to.
    pub fn is_pattern(&self) -> bool {
        self.pattern
    }

    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }
}

/// Checks `name`; returns whether it is a pattern. With `patterns` false, a wildcard is
/// refused (a name published to, or read off the wire as a publish).
pub(crate) fn validate(name: &str, patterns: bool) -> Result<bool, TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong {
            len: name.len(),
            max: MAX_TOPIC_LEN,
        });
    }
    let count = name.split('.').count();
    if count > MAX_SEGMENTS {
        return Err(TopicError::TooManySegments {
            count,
            max: MAX_SEGMENTS,
        });
    }
    let mut pattern = false;
    for (i, seg) in name.split('.').enumerate() {
        match seg {
            "" => {
                return Err(TopicError::EmptySegment {
                    name: name.to_owned(),
                    index: i,
                });
            }
            "*" | "#" if !patterns => {
                return Err(TopicError::Wildcard {
                    name: name.to_owned(),
                });
            }
            "#" if i + 1 != count => {
                return Err(TopicError::HashNotLast {
                    name: name.to_owned(),
                });
            }
            "*" | "#" => pattern = true,
            s if s.contains(['*', '#']) => {
                return Err(TopicError::PartialWildcard {
                    name: name.to_owned(),
                    index: i,
                });
            }
            _ => {}
        }
    }
    Ok(pattern)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns_are_checked() {
        assert_eq!(validate("orders", false), Ok(false));
        assert_eq!(validate("orders.created", false), Ok(false));
        assert_eq!(validate("orders.*", true), Ok(true));
        assert_eq!(validate("#", true), Ok(true));
        assert_eq!(validate("", true), Err(TopicError::Empty));
        assert!(matches!(
            validate(&"a".repeat(MAX_TOPIC_LEN + 1), true),
            Err(TopicError::TooLong { .. })
        ));
        assert!(validate(&"a".repeat(MAX_TOPIC_LEN), true).is_ok());
        assert!(matches!(
            validate(&vec!["a"; MAX_SEGMENTS + 1].join("."), true),
            Err(TopicError::TooManySegments { .. })
        ));
        assert!(matches!(
            validate("orders..created", true),
            Err(TopicError::EmptySegment { index: 1, .. })
        ));
        assert!(matches!(
            validate(".orders", true),
            Err(TopicError::EmptySegment { index: 0, .. })
        ));
        assert!(matches!(
            validate("orders.", true),
            Err(TopicError::EmptySegment { index: 1, .. })
        ));
        assert!(matches!(
            validate("orders.*", false),
            Err(TopicError::Wildcard { .. })
        ));
        assert!(matches!(
            validate("orders.#.x", true),
            Err(TopicError::HashNotLast { .. })
        ));
        assert!(matches!(
            validate("orders.cre*", true),
            Err(TopicError::PartialWildcard { index: 1, .. })
        ));
    }
}
