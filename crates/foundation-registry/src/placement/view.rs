//! The membership view the placement core plans over.

use std::collections::{BTreeMap, BTreeSet};

use foundation_cluster::membership::{Member, Status};

use super::distribution::{Distribution, Load};

/// A live member as the placement core sees it: its name, which start of it this is, the
/// roles it offers and whether it is leaving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name, unique in the cluster.
    pub id: String,
    /// Which start of that node this is: higher is newer. Also its age for
    /// [`Quorum::KeepOldest`](super::Quorum::KeepOldest): the smallest incarnation is the
    /// oldest member (ties broken by name), so use a start time.
    pub incarnation: u64,
    /// The roles (capabilities) it offers, such as `"gpu"`.
    pub roles: BTreeSet<String>,
    /// Announced a graceful leave: still running what it has, never given anything new.
    pub leaving: bool,
}

impl NodeInfo {
    /// An up node without roles.
    pub fn new(id: impl Into<String>, incarnation: u64) -> Self {
        Self {
            id: id.into(),
            incarnation,
            roles: BTreeSet::new(),
            leaving: false,
        }
    }

    /// The same node offering `role` too.
    #[must_use]
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.roles.insert(role.into());
        self
    }

    /// The same node, leaving.
    #[must_use]
    pub fn leaving(mut self) -> Self {
        self.leaving = true;
        self
    }

    /// Whether this node may be given a child restricted to `role` (`None`: any node).
    pub fn has_role(&self, role: Option<&str>) -> bool {
        role.is_none_or(|r| self.roles.contains(r))
    }
}

impl From<&Member> for NodeInfo {
    /// The member as a node without roles (roles come from the node's configuration).
    fn from(member: &Member) -> Self {
        Self {
            id: member.id.clone(),
            incarnation: member.incarnation,
            roles: BTreeSet::new(),
            leaving: matches!(member.status, Status::Leaving),
        }
    }
}

/// The live members (up or leaving) one node sees: the input of every placement decision.
///
/// Down members are not in the view. Two nodes holding equal views compute the same owners
/// and the same plan; the order in which members were inserted never matters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    nodes: BTreeMap<String, NodeInfo>,
}

impl View {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a member (a newer incarnation replaces the older one); gives back
    /// the one it replaced.
    pub fn insert(&mut self, node: NodeInfo) -> Option<NodeInfo> {
        self.nodes.insert(node.id.clone(), node)
    }

    /// Removes a member (it went down); gives it back.
    pub fn remove(&mut self, id: &str) -> Option<NodeInfo> {
        self.nodes.remove(id)
    }

    /// The member named `id`.
    pub fn get(&self, id: &str) -> Option<&NodeInfo> {
        self.nodes.get(id)
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: &str) -> bool {
        self.nodes.contains_key(id)
    }

    /// Whether the start `incarnation` of node `id` is live (up or leaving). An instance
    /// recorded on an older incarnation of a node that has since restarted is not.
    pub fn is_live(&self, id: &str, incarnation: u64) -> bool {
        self.nodes
            .get(id)
            .is_some_and(|n| n.incarnation == incarnation)
    }

    /// The members, by name.
    pub fn iter(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    /// The members' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The members that may be given a new child restricted to `role`: up, not leaving,
    /// offering the role. Sorted by name.
    pub fn eligible(&self, role: Option<&str>) -> Vec<&str> {
        self.nodes
            .values()
            .filter(|n| !n.leaving && n.has_role(role))
            .map(|n| n.id.as_str())
            .collect()
    }

    /// The owners of `key` among the eligible members for `role`, at most `n`, in order of
    /// preference. This is the call a shard's placement makes too (its key is the shard
    /// number's bytes): every node with the same view, load and distribution gets the same
    /// answer.
    pub fn owners<D: Distribution + ?Sized>(
        &self,
        distribution: &D,
        key: &[u8],
        n: usize,
        role: Option<&str>,
        load: &Load,
    ) -> Vec<&str> {
        let mut ranked = distribution.rank(key, &self.eligible(role), load);
        ranked.truncate(n);
        ranked
    }
}

impl FromIterator<NodeInfo> for View {
    fn from_iter<T: IntoIterator<Item = NodeInfo>>(iter: T) -> Self {
        let mut view = Self::new();
        for node in iter {
            view.insert(node);
        }
        view
    }
}
