//! The bounded buffer of one subscriber and what happens when it is full.

use std::collections::VecDeque;

/// What happens to a message for a subscriber whose buffer is full. Either way the loss
/// is counted, per subscriber and topic ([`crate::PubSub::drops`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the oldest message waiting, keep the new one (the subscriber sees the latest).
    DropOldest,
    /// Drop the new message (the subscriber sees the earliest). The default.
    #[default]
    DropNewest,
    /// Drop the new message and end the subscription: a stream ends, an actor is
    /// unsubscribed (and a warning is logged).
    Disconnect,
}

/// How a subscriber's buffer is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferConfig {
    /// How many messages may wait for the subscriber, not taken by it yet: in a stream's
    /// queue, or an actor's (the one its handler is on is taken). At least 1. Default
    /// 1,024.
    pub capacity: usize,
    /// What happens when that many wait.
    pub overflow: Overflow,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            capacity: 1024,
            overflow: Overflow::default(),
        }
    }
}

impl BufferConfig {
    /// `capacity` messages, then `overflow`.
    pub fn new(capacity: usize, overflow: Overflow) -> Self {
        Self {
            capacity: capacity.max(1),
            overflow,
        }
    }
}

/// What [`Buffer::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued.
    Queued,
    /// Queued, and the oldest waiting message dropped for it.
    DroppedOldest,
    /// Not queued.
    DroppedNewest,
    /// Not queued, and the subscription must end.
    Disconnect,
}

impl Pushed {
    /// Whether a message was lost.
    #[cfg(test)]
    pub(crate) fn lost(self) -> bool {
        self != Pushed::Queued
    }
}

/// A bounded queue with an overflow policy.
#[derive(Debug)]
pub(crate) struct Buffer<T> {
    items: VecDeque<T>,
    config: BufferConfig,
}

impl<T> Buffer<T> {
    pub(crate) fn new(config: BufferConfig) -> Self {
        let config = BufferConfig::new(config.capacity, config.overflow);
        Self {
            // Grows as needed up to the capacity; a large capacity costs nothing idle.
            items: VecDeque::with_capacity(config.capacity.min(16)),
            config,
        }
    }

    pub(crate) fn push(&mut self, item: T) -> Pushed {
        if self.items.len() < self.config.capacity {
            self.items.push_back(item);
            return Pushed::Queued;
        }
        match self.config.overflow {
            Overflow::DropOldest => {
                self.items.pop_front();
                self.items.push_back(item);
                Pushed::DroppedOldest
            }
            Overflow::DropNewest => Pushed::DroppedNewest,
            Overflow::Disconnect => Pushed::Disconnect,
        }
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn filled(overflow: Overflow) -> (Buffer<u32>, Vec<Pushed>) {
        let mut b = Buffer::new(BufferConfig::new(3, overflow));
        let pushed = (1..=5).map(|i| b.push(i)).collect();
        (b, pushed)
    }

    fn drain(b: &mut Buffer<u32>) -> Vec<u32> {
        std::iter::from_fn(|| b.pop()).collect()
    }

    #[test]
    fn drop_oldest_keeps_the_latest() {
        let (mut b, pushed) = filled(Overflow::DropOldest);
        assert_eq!(pushed.iter().filter(|p| p.lost()).count(), 2);
        assert_eq!(pushed[3], Pushed::DroppedOldest);
        assert_eq!(b.len(), 3);
        assert_eq!(drain(&mut b), [3, 4, 5]);
    }

    #[test]
    fn drop_newest_keeps_the_earliest() {
        let (mut b, pushed) = filled(Overflow::DropNewest);
        assert_eq!(&pushed[3..], [Pushed::DroppedNewest, Pushed::DroppedNewest]);
        assert_eq!(drain(&mut b), [1, 2, 3]);
        // Room again once read.
        assert_eq!(b.push(6), Pushed::Queued);
        assert_eq!(drain(&mut b), [6]);
    }

    #[test]
    fn disconnect_says_so_when_full() {
        let (mut b, pushed) = filled(Overflow::Disconnect);
        assert_eq!(pushed[3], Pushed::Disconnect);
        assert_eq!(drain(&mut b), [1, 2, 3]);
    }

    #[test]
    fn capacity_is_at_least_one() {
        let mut b = Buffer::new(BufferConfig {
            capacity: 0,
            overflow: Overflow::DropNewest,
        });
        assert_eq!(b.push(1), Pushed::Queued);
        assert_eq!(b.push(2), Pushed::DroppedNewest);
    }
}
