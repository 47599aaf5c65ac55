//! The topic trie: values stored under names and patterns, found for a topic by walking
//! its segments once (never by testing every pattern).
//!
//! A node has children by exact segment, one child for `*`, a value for the name ending
//! there, and a value for `#` there (zero or more segments more). A lookup of a topic with
//! `n` segments visits at most the nodes its prefixes reach, each once: a pattern matches
//! a topic at most once.

use std::collections::HashMap;

#[derive(Debug)]
struct Node<V> {
    exact: HashMap<Box<str>, Node<V>>,
    star: Option<Box<Node<V>>>,
    here: Option<V>,
    hash: Option<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            star: None,
            here: None,
            hash: None,
        }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.star.is_none() && self.here.is_none() && self.hash.is_none()
    }
}

/// Values under topic names and patterns (already validated).
#[derive(Debug)]
pub(crate) struct Trie<V> {
    root: Node<V>,
}

impl<V> Default for Trie<V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
        }
    }
}

impl<V> Trie<V> {
    /// The value slot of `filter`, made if missing.
    pub(crate) fn slot(&mut self, filter: &str) -> &mut Option<V> {
        let mut node = &mut self.root;
        let mut segs = filter.split('.').peekable();
        while let Some(seg) = segs.next() {
            if seg == "#" && segs.peek().is_none() {
                return &mut node.hash;
            }
            node = if seg == "*" {
                node.star.get_or_insert_with(Box::default)
            } else {
                node.exact.entry(Box::from(seg)).or_default()
            };
        }
        &mut node.here
    }

    /// The value of `filter`, if any.
    pub(crate) fn get(&self, filter: &str) -> Option<&V> {
        let mut node = &self.root;
        let mut segs = filter.split('.').peekable();
        while let Some(seg) = segs.next() {
            if seg == "#" && segs.peek().is_none() {
                return node.hash.as_ref();
            }
            node = if seg == "*" {
                node.star.as_deref()?
            } else {
                node.exact.get(seg)?
            };
        }
        node.here.as_ref()
    }

    /// Takes the value of `filter` out, and the nodes left empty with it.
    pub(crate) fn remove(&mut self, filter: &str) -> Option<V> {
        let segs: Vec<&str> = filter.split('.').collect();
        remove_at(&mut self.root, &segs)
    }

    /// Calls `f` with every value whose name or pattern matches the topic `topic`.
    pub(crate) fn matches<'a>(&'a self, topic: &str, mut f: impl FnMut(&'a V)) {
        let segs: Vec<&str> = topic.split('.').collect();
        walk(&self.root, &segs, &mut f);
    }

    /// Whether any name or pattern matches `topic`.
    pub(crate) fn any_match(&self, topic: &str) -> bool {
        let mut any = false;
        self.matches(topic, |_| any = true);
        any
    }

    /// Whether it holds nothing.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.root.is_empty()
    }
}

fn walk<'a, V>(node: &'a Node<V>, segs: &[&str], f: &mut impl FnMut(&'a V)) {
    if let Some(v) = &node.hash {
        f(v);
    }
    let Some((first, rest)) = segs.split_first() else {
        if let Some(v) = &node.here {
            f(v);
        }
        return;
    };
    if let Some(child) = node.exact.get(*first) {
        walk(child, rest, f);
    }
    if let Some(child) = &node.star {
        walk(child, rest, f);
    }
}

fn remove_at<V>(node: &mut Node<V>, segs: &[&str]) -> Option<V> {
    let Some((first, rest)) = segs.split_first() else {
        return node.here.take();
    };
    if *first == "#" && rest.is_empty() {
        return node.hash.take();
    }
    if *first == "*" {
        let child = node.star.as_deref_mut()?;
        let v = remove_at(child, rest);
        if child.is_empty() {
            node.star = None;
        }
        v
    } else {
        let child = node.exact.get_mut(*first)?;
        let v = remove_at(child, rest);
        if child.is_empty() {
            node.exact.remove(*first);
        }
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn found(t: &Trie<&'static str>, topic: &str) -> Vec<&'static str> {
        let mut v = Vec::new();
        t.matches(topic, |x| v.push(*x));
        v.sort_unstable();
        v
    }

    fn trie(filters: &[&'static str]) -> Trie<&'static str> {
        let mut t = Trie::default();
        for f in filters {
            *t.slot(f) = Some(*f);
        }
        t
    }

    #[test]
    fn exact_star_and_hash_match_as_documented() {
        let t = trie(&[
            "orders",
            "orders.created",
            "orders.*",
            "orders.#",
            "#",
            "*.created",
        ]);
        assert_eq!(found(&t, "orders"), ["#", "orders", "orders.#"]);
        assert_eq!(
            found(&t, "orders.created"),
            ["#", "*.created", "orders.#", "orders.*", "orders.created"]
        );
        assert_eq!(found(&t, "orders.eu.created"), ["#", "orders.#"]);
        assert_eq!(found(&t, "users.created"), ["#", "*.created"]);
        assert_eq!(found(&t, "users"), ["#"]);
    }

    #[test]
    fn star_is_exactly_one_segment() {
        let t = trie(&["a.*.c", "a.*"]);
        assert_eq!(found(&t, "a.b.c"), ["a.*.c"]);
        assert_eq!(found(&t, "a.b"), ["a.*"]);
        assert!(found(&t, "a").is_empty());
        assert!(found(&t, "a.b.c.d").is_empty());
        assert!(!t.any_match("x"));
        assert!(t.any_match("a.x"));
    }

    #[test]
    fn each_pattern_matches_at_most_once() {
        let t = trie(&["a.#", "*.*", "a.*.#"]);
        assert_eq!(found(&t, "a.b"), ["*.*", "a.#", "a.*.#"]);
        assert_eq!(found(&t, "a.b.c.d"), ["a.#", "a.*.#"]);
    }

    #[test]
    fn removal_prunes_and_keeps_the_others() {
        let mut t = trie(&["a.b.c", "a.*", "a.#"]);
        assert_eq!(t.get("a.*"), Some(&"a.*"));
        assert_eq!(t.remove("a.b.c"), Some("a.b.c"));
        assert_eq!(t.remove("a.b.c"), None);
        assert_eq!(found(&t, "a.b"), ["a.#", "a.*"]);
        assert_eq!(t.remove("a.*"), Some("a.*"));
        assert_eq!(t.remove("a.#"), Some("a.#"));
        assert!(t.is_empty());
        assert_eq!(t.remove("never.there"), None);
    }

    #[test]
    fn many_patterns_one_topic() {
        let mut t: Trie<usize> = Trie::default();
        for i in 0..1000 {
            *t.slot(&format!("room.{i}.*")) = Some(i);
        }
        let mut hits = Vec::new();
        t.matches("room.417.msg", |v| hits.push(*v));
        assert_eq!(hits, [417]);
    }
}
