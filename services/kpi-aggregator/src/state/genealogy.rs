//! A tenant's genealogy in memory: every partner's sponsor, for the team roll-ups that walk
//! the upline.
//!
//! Partners are numbered in the order they are first seen; ids live once, in one string
//! arena, and a hash table of numbers finds them, so a million partners take tens of
//! megabytes, not hundreds.

use std::hash::BuildHasher as _;

use hashbrown::{DefaultHashBuilder, HashTable};

/// A partner's number in its tenant's genealogy.
pub type Node = u32;

const NO_PARENT: Node = Node::MAX;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenealogyError {
    #[error(
        "sponsoring `{child}` by `{parent}` makes a cycle: `{parent}` is in `{child}`'s downline"
    )]
    Cycle { child: String, parent: String },
    #[error("the genealogy holds {0} partners, the most one tenant may have")]
    Full(usize),
}

#[derive(Default)]
pub struct Genealogy {
    /// Every id, one after the other; `ends[n]` is where the id of node n ends.
    arena: String,
    ends: Vec<u32>,
    parents: Vec<Node>,
    /// Direct recruits as lists: the first of each node's, and each node's next sibling.
    first_child: Vec<Node>,
    next_sibling: Vec<Node>,
    /// Partners in each node's subtree, the node included.
    sizes: Vec<u32>,
    table: HashTable<Node>,
    hasher: DefaultHashBuilder,
}

impl std::fmt::Debug for Genealogy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Genealogy")
            .field("partners", &self.len())
            .finish_non_exhaustive()
    }
}

impl Genealogy {
    pub fn len(&self) -> usize {
        self.parents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parents.is_empty()
    }

    /// The id of a node.
    pub fn id(&self, node: Node) -> &str {
        let node = node as usize;
        let start = if node == 0 {
            0
        } else {
            self.ends[node - 1] as usize
        };
        &self.arena[start..self.ends[node] as usize]
    }

    pub fn find(&self, id: &str) -> Option<Node> {
        let hash = self.hasher.hash_one(id);
        self.table.find(hash, |node| self.id(*node) == id).copied()
    }

    /// The node of `id`, numbering it if it is new.
    pub fn node(&mut self, id: &str) -> Result<Node, GenealogyError> {
        if let Some(node) = self.find(id) {
            return Ok(node);
        }
        let full = || GenealogyError::Full(self.parents.len());
        let node = Node::try_from(self.parents.len())
            .ok()
            .filter(|node| *node != NO_PARENT);
        let node = node.ok_or_else(full)?;
        let end = u32::try_from(self.arena.len() + id.len()).map_err(|_| full())?;
        self.arena.push_str(id);
        self.ends.push(end);
        self.parents.push(NO_PARENT);
        self.first_child.push(NO_PARENT);
        self.next_sibling.push(NO_PARENT);
        self.sizes.push(1);
        let hash = self.hasher.hash_one(id);
        let Self {
            table,
            hasher,
            arena,
            ends,
            ..
        } = self;
        table.insert_unique(hash, node, |node| {
            let node = *node as usize;
            let start = if node == 0 {
                0
            } else {
                ends[node - 1] as usize
            };
            hasher.hash_one(&arena[start..ends[node] as usize])
        });
        Ok(node)
    }

    pub fn parent(&self, node: Node) -> Option<Node> {
        let parent = self.parents[node as usize];
        (parent != NO_PARENT).then_some(parent)
    }

    /// The sponsors of `node`, nearest first.
    pub fn upline(&self, node: Node) -> impl Iterator<Item = Node> + '_ {
        std::iter::successors(self.parent(node), |node| self.parent(*node))
    }

    /// Makes `parent` the sponsor of `child` (`None`: a root). Refused when `child` is
    /// `parent` or one of its sponsors, which would make a cycle.
    pub fn set_parent(&mut self, child: Node, parent: Option<Node>) -> Result<(), GenealogyError> {
        if let Some(parent) = parent
            && (parent == child || self.upline(parent).any(|node| node == child))
        {
            return Err(GenealogyError::Cycle {
                child: self.id(child).to_owned(),
                parent: self.id(parent).to_owned(),
            });
        }
        let size = self.sizes[child as usize];
        if let Some(old) = self.parent(child) {
            self.detach(old, child);
            for node in std::iter::once(old)
                .chain(self.upline(old))
                .collect::<Vec<_>>()
            {
                self.sizes[node as usize] -= size;
            }
        }
        self.parents[child as usize] = parent.unwrap_or(NO_PARENT);
        if let Some(parent) = parent {
            self.next_sibling[child as usize] = self.first_child[parent as usize];
            self.first_child[parent as usize] = child;
            for node in std::iter::once(parent)
                .chain(self.upline(parent))
                .collect::<Vec<_>>()
            {
                self.sizes[node as usize] += size;
            }
        }
        Ok(())
    }

    /// Removes `child` from `parent`'s list of recruits.
    fn detach(&mut self, parent: Node, child: Node) {
        let next = self.next_sibling[child as usize];
        self.next_sibling[child as usize] = NO_PARENT;
        if self.first_child[parent as usize] == child {
            self.first_child[parent as usize] = next;
            return;
        }
        let mut sibling = self.first_child[parent as usize];
        while sibling != NO_PARENT {
            if self.next_sibling[sibling as usize] == child {
                self.next_sibling[sibling as usize] = next;
                return;
            }
            sibling = self.next_sibling[sibling as usize];
        }
    }

    /// The partners in `node`'s subtree, the node included.
    pub fn size(&self, node: Node) -> u32 {
        self.sizes[node as usize]
    }

    /// The direct recruits of `node`.
    pub fn children(&self, node: Node) -> impl Iterator<Item = Node> + '_ {
        let first = Some(self.first_child[node as usize]).filter(|child| *child != NO_PARENT);
        std::iter::successors(first, |child| {
            Some(self.next_sibling[*child as usize]).filter(|next| *next != NO_PARENT)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_numbered_once_and_found_again() {
        let mut genealogy = Genealogy::default();
        let ann = genealogy.node("ann").expect("node");
        let bob = genealogy.node("bob").expect("node");
        assert_eq!((ann, bob), (0, 1));
        assert_eq!(genealogy.node("ann"), Ok(0));
        assert_eq!(genealogy.find("bob"), Some(1));
        assert_eq!(genealogy.find("bo"), None);
        assert_eq!((genealogy.id(0), genealogy.id(1)), ("ann", "bob"));
        for n in 0..10_000 {
            genealogy.node(&format!("p{n}")).expect("node");
        }
        assert_eq!(genealogy.len(), 10_002);
        assert_eq!(genealogy.find("p9999"), Some(10_001));
        assert_eq!(genealogy.id(10_001), "p9999");
    }

    #[test]
    fn the_upline_is_walked_nearest_first() {
        let mut genealogy = Genealogy::default();
        let [root, a, b, c] = ["root", "a", "b", "c"].map(|id| genealogy.node(id).expect("node"));
        genealogy.set_parent(a, Some(root)).expect("edge");
        genealogy.set_parent(b, Some(a)).expect("edge");
        genealogy.set_parent(c, Some(b)).expect("edge");
        assert_eq!(genealogy.upline(c).collect::<Vec<_>>(), vec![b, a, root]);
        assert_eq!(genealogy.upline(root).count(), 0);
        genealogy
            .set_parent(c, Some(root))
            .expect("a sponsor may change");
        assert_eq!(genealogy.upline(c).collect::<Vec<_>>(), vec![root]);
    }

    #[test]
    fn subtree_sizes_and_recruits_follow_every_change_in_any_order() {
        let mut genealogy = Genealogy::default();
        let [root, a, b, c, d] =
            ["root", "a", "b", "c", "d"].map(|id| genealogy.node(id).expect("node"));
        // Children before their parents' own edges.
        genealogy.set_parent(c, Some(b)).expect("edge");
        genealogy.set_parent(d, Some(b)).expect("edge");
        genealogy.set_parent(b, Some(a)).expect("edge");
        genealogy.set_parent(a, Some(root)).expect("edge");
        let sizes = |genealogy: &Genealogy| [root, a, b, c, d].map(|node| genealogy.size(node));
        assert_eq!(sizes(&genealogy), [5, 4, 3, 1, 1]);
        let mut recruits: Vec<Node> = genealogy.children(b).collect();
        recruits.sort_unstable();
        assert_eq!(recruits, vec![c, d]);
        // b's team moves from a to root.
        genealogy.set_parent(b, Some(root)).expect("edge");
        assert_eq!(sizes(&genealogy), [5, 1, 3, 1, 1]);
        assert_eq!(genealogy.children(a).count(), 0);
        assert_eq!(genealogy.children(root).count(), 2);
        genealogy.set_parent(c, None).expect("a root");
        assert_eq!(sizes(&genealogy), [4, 1, 2, 1, 1]);
        assert_eq!(genealogy.children(b).collect::<Vec<_>>(), vec![d]);
    }

    #[test]
    fn a_cycle_is_refused_and_changes_nothing() {
        let mut genealogy = Genealogy::default();
        let [a, b, c] = ["a", "b", "c"].map(|id| genealogy.node(id).expect("node"));
        genealogy.set_parent(b, Some(a)).expect("edge");
        genealogy.set_parent(c, Some(b)).expect("edge");
        assert_eq!(
            genealogy.set_parent(a, Some(c)),
            Err(GenealogyError::Cycle {
                child: "a".into(),
                parent: "c".into()
            })
        );
        assert_eq!(
            genealogy
                .set_parent(a, Some(a))
                .map_err(|error| error.to_string()),
            Err("sponsoring `a` by `a` makes a cycle: `a` is in `a`'s downline".into())
        );
        assert_eq!(genealogy.parent(a), None);
    }
}
