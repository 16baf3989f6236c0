//! Team totals (docs/kpi-engine.md, "Team totals"). A team record — the own counters of a partner
//! and everyone below them — is kept for every **hub**: a partner whose subtree holds at least
//! [`HUB_SIZE`] partners. Any other team has fewer than [`HUB_SIZE`] partners and is summed
//! from their records when it is needed (a query, a move, a promotion). In a genealogy of 100k
//! partners about 3 % are hubs, and a batch of 32k events changes a tenth as many team records
//! as it would with a record per partner.
//!
//! A partner becomes a hub at the end of the batch that took its subtree to [`HUB_SIZE`], its
//! record summed from its subtree then; it stays one if its subtree shrinks again.

use std::collections::{HashMap, HashSet};

use crate::state::counts::Counters;
use crate::state::genealogy::{Genealogy, GenealogyError, Node};
use crate::state::partner::PartnerRecord;

pub use crate::state::keys::HUB_SIZE;

/// A genealogy change of a batch: (child, old sponsor, new sponsor).
pub type Edge = (Node, Option<Node>, Option<Node>);

/// What a batch must have loaded before its teams are rolled up.
#[derive(Debug, Default)]
pub struct Needs {
    /// Hub records.
    pub hubs: HashSet<Node>,
    /// Partner records (members of small teams that are summed).
    pub partners: HashSet<Node>,
}

/// The hubs of a tenant, and the records of those loaded.
#[derive(Debug, Default)]
pub struct Teams {
    hubs: HashSet<Node>,
    pub records: HashMap<Node, Counters>,
}

impl Teams {
    pub fn is_hub(&self, node: Node) -> bool {
        self.hubs.contains(&node)
    }

    /// Marks a stored team record's partner as a hub (a new writer learns them all).
    pub fn know_hub(&mut self, node: Node) {
        self.hubs.insert(node);
    }

    /// What applying the batch will read: the hubs its changes reach, on the genealogy before
    /// the batch (for the partners' own changes) and as it is at each of its `edges` (for the
    /// teams that move), and the members of the small teams that move or become hubs. The
    /// genealogy ends as it was after the batch.
    pub fn needs(
        &self,
        genealogy: &mut Genealogy,
        edges: &[Edge],
        changed: &[Node],
    ) -> Result<Needs, GenealogyError> {
        let mut needs = Needs::default();
        undo(genealogy, edges)?;
        for partner in changed {
            let hubs = with_upline(genealogy, Some(*partner)).filter(|node| self.is_hub(*node));
            needs.hubs.extend(hubs);
        }
        for (child, old, new) in edges {
            self.members(genealogy, *child, &mut needs);
            for start in [old, new] {
                let hubs = with_upline(genealogy, *start).filter(|node| self.is_hub(*node));
                needs.hubs.extend(hubs);
            }
            genealogy.set_parent(*child, *new)?;
        }
        for candidate in self.candidates(genealogy, edges) {
            self.members(genealogy, candidate, &mut needs);
        }
        Ok(needs)
    }

    /// Adds what summing `root`'s team needs: hub records where the subtree has them, partner
    /// records elsewhere.
    pub fn members(&self, genealogy: &Genealogy, root: Node, needs: &mut Needs) {
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            if self.is_hub(node) {
                needs.hubs.insert(node);
            } else {
                needs.partners.insert(node);
                stack.extend(genealogy.children(node));
            }
        }
    }

    /// Partners whose subtree a batch grew to [`HUB_SIZE`] or more and that are not hubs yet.
    fn candidates(&self, genealogy: &Genealogy, edges: &[Edge]) -> Vec<Node> {
        let mut seen = HashSet::new();
        edges
            .iter()
            .flat_map(|(_, _, new)| with_upline(genealogy, *new))
            .filter(|node| seen.insert(*node))
            .filter(|node| genealogy.size(*node) >= HUB_SIZE && !self.is_hub(*node))
            .collect()
    }

    /// The team of `node` now: its record if it is a hub, else the sum of its members'.
    pub fn total(
        &self,
        genealogy: &Genealogy,
        node: Node,
        partners: &HashMap<Node, PartnerRecord>,
    ) -> Counters {
        let mut total = Counters::default();
        let mut stack = vec![node];
        while let Some(member) = stack.pop() {
            if self.is_hub(member) {
                if let Some(record) = self.records.get(&member) {
                    total.add_all(record, 1);
                }
            } else {
                if let Some(record) = partners.get(&member) {
                    total.add_all(&record.personal, 1);
                }
                stack.extend(genealogy.children(member));
            }
        }
        total
    }

    /// Applies a batch to the hub records. Every change becomes a pending change at the
    /// nearest hub above where it happens: each partner's change of its own counters
    /// (`deltas`) where the partner was before the batch, and each of `edges` (in order, on the
    /// genealogy as it is then) as its child's team leaving the old sponsor and reaching the
    /// new one. Teams read meanwhile (a moving child's) are the hub records without pending
    /// changes and the partners' records after the batch (`partners`), and every pending
    /// change reaches the hubs above it on the genealogy after the batch, deepest first, each
    /// hub once: so every change cancels or lands where its subtree ends up. Then partners
    /// whose subtree reached [`HUB_SIZE`] become hubs. Returns the hubs whose record changed.
    pub fn apply(
        &mut self,
        genealogy: &mut Genealogy,
        edges: &[Edge],
        deltas: &HashMap<Node, Counters>,
        partners: &HashMap<Node, PartnerRecord>,
    ) -> Result<HashSet<Node>, GenealogyError> {
        let mut pending: HashMap<Node, Counters> = HashMap::new();
        let mut pend = |teams: &Self,
                        genealogy: &Genealogy,
                        start: Option<Node>,
                        change: &Counters,
                        sign: i64| {
            if let Some(hub) = teams.nearest_hub(genealogy, start) {
                pending.entry(hub).or_default().add_all(change, sign);
            }
        };
        undo(genealogy, edges)?;
        for (partner, delta) in deltas {
            pend(self, genealogy, Some(*partner), delta, 1);
        }
        for (child, old, new) in edges {
            let team = self.total(genealogy, *child, partners);
            pend(self, genealogy, *old, &team, -1);
            genealogy.set_parent(*child, *new)?;
            pend(self, genealogy, *new, &team, 1);
        }
        let mut changed = HashSet::new();
        self.roll_up(genealogy, pending, &mut changed);
        for candidate in self.candidates(genealogy, edges) {
            let team = self.total(genealogy, candidate, partners);
            self.records.insert(candidate, team);
            self.hubs.insert(candidate);
            changed.insert(candidate);
        }
        Ok(changed)
    }

    /// Each pending change to its hub and then hub by hub upwards, deepest first, so that every
    /// hub is changed once whatever the number of changes below it.
    fn roll_up(
        &mut self,
        genealogy: &Genealogy,
        mut pending: HashMap<Node, Counters>,
        changed: &mut HashSet<Node>,
    ) {
        let mut hubs: HashSet<Node> = HashSet::new();
        for hub in pending.keys() {
            hubs.extend(with_upline(genealogy, Some(*hub)).filter(|node| self.is_hub(*node)));
        }
        for hub in deepest_first(genealogy, hubs) {
            let Some(delta) = pending.remove(&hub) else {
                continue;
            };
            if delta.is_empty() {
                continue;
            }
            self.records.entry(hub).or_default().add_all(&delta, 1);
            changed.insert(hub);
            if let Some(above) = self.nearest_hub(genealogy, genealogy.parent(hub)) {
                pending.entry(above).or_default().add_all(&delta, 1);
            }
        }
    }

    fn nearest_hub(&self, genealogy: &Genealogy, start: Option<Node>) -> Option<Node> {
        with_upline(genealogy, start).find(|node| self.is_hub(*node))
    }
}

/// `start` and its upline, nearest first (nothing for `None`).
pub fn with_upline(genealogy: &Genealogy, start: Option<Node>) -> impl Iterator<Item = Node> + '_ {
    start
        .into_iter()
        .chain(start.into_iter().flat_map(|node| genealogy.upline(node)))
}

/// `nodes`, the deepest first: a node comes before every node above it.
pub fn deepest_first(genealogy: &Genealogy, nodes: HashSet<Node>) -> Vec<Node> {
    let mut order: Vec<(usize, Node)> = nodes
        .into_iter()
        .map(|node| (genealogy.upline(node).count(), node))
        .collect();
    order.sort_unstable_by(|a, b| b.cmp(a));
    order.into_iter().map(|(_, node)| node).collect()
}

/// Puts the genealogy back as it was before a batch's `edges`.
pub fn undo(genealogy: &mut Genealogy, edges: &[Edge]) -> Result<(), GenealogyError> {
    for (child, old, _) in edges.iter().rev() {
        genealogy.set_parent(*child, *old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Counter;
    use crate::state::counts::LocalDay;

    /// A chain root ← n1 ← … and a record per partner with one order each.
    fn chain(length: usize) -> (Genealogy, Vec<Node>, HashMap<Node, PartnerRecord>) {
        let mut genealogy = Genealogy::default();
        let nodes: Vec<Node> = (0..length)
            .map(|n| genealogy.node(&format!("n{n}")).expect("node"))
            .collect();
        let mut partners = HashMap::new();
        for window in nodes.windows(2) {
            genealogy
                .set_parent(window[1], Some(window[0]))
                .expect("edge");
        }
        for node in &nodes {
            let mut record = PartnerRecord::default();
            record.personal.add(LocalDay(20_000), Counter::Orders, 1);
            partners.insert(*node, record);
        }
        (genealogy, nodes, partners)
    }

    fn orders(counters: &Counters) -> i64 {
        counters.life.get(Counter::Orders)
    }

    /// Batches of enrolments, moves and sales in random order: afterwards every team — a
    /// hub's record or a small team's sum — equals its subtree counted from scratch, and every
    /// subtree of [`HUB_SIZE`] or more is a hub.
    #[test]
    fn teams_equal_their_subtrees_after_random_batches() {
        use rand::{Rng as _, SeedableRng as _};
        for seed in 0..20 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut genealogy = Genealogy::default();
            let mut teams = Teams::default();
            let mut partners: HashMap<Node, PartnerRecord> = HashMap::new();
            for _ in 0..30 {
                let mut edges: Vec<Edge> = Vec::new();
                let mut deltas: HashMap<Node, Counters> = HashMap::new();
                for _ in 0..rng.random_range(1..25) {
                    let known = Node::try_from(genealogy.len()).expect("small");
                    let (child, parent) = match rng.random_range(0..4) {
                        0 | 1 => {
                            let child = genealogy.node(&format!("p{known}")).expect("node");
                            partners.entry(child).or_default();
                            (child, (known > 0).then(|| rng.random_range(0..known)))
                        }
                        2 if known > 1 => {
                            (rng.random_range(0..known), Some(rng.random_range(0..known)))
                        }
                        _ if known > 0 => {
                            let partner = rng.random_range(0..known);
                            let mut delta = Counters::default();
                            delta.add(LocalDay(20_000), Counter::Orders, rng.random_range(1..5));
                            partners
                                .entry(partner)
                                .or_default()
                                .personal
                                .add_all(&delta, 1);
                            deltas.entry(partner).or_default().add_all(&delta, 1);
                            continue;
                        }
                        _ => continue,
                    };
                    let old = genealogy.parent(child);
                    if genealogy.set_parent(child, parent).is_ok() {
                        edges.push((child, old, parent));
                    }
                }
                teams
                    .apply(&mut genealogy, &edges, &deltas, &partners)
                    .expect("applied");
                for node in 0..Node::try_from(genealogy.len()).expect("small") {
                    let mut expected = 0;
                    let mut stack = vec![node];
                    while let Some(member) = stack.pop() {
                        expected += partners
                            .get(&member)
                            .map_or(0, |record| orders(&record.personal));
                        stack.extend(genealogy.children(member));
                    }
                    let total = teams.total(&genealogy, node, &partners);
                    assert_eq!(orders(&total), expected, "seed {seed}, node {node}");
                    if genealogy.size(node) >= HUB_SIZE {
                        assert!(teams.is_hub(node), "seed {seed}, node {node}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_top_of_a_long_chain_becomes_hubs_and_small_teams_are_summed() {
        let (mut genealogy, nodes, partners) = chain(40);
        let mut teams = Teams::default();
        // Everyone enrolled in one batch: each edge is new.
        let edges: Vec<Edge> = nodes
            .windows(2)
            .map(|pair| (pair[1], None, Some(pair[0])))
            .collect();
        teams.needs(&mut genealogy, &edges, &nodes).expect("needs");
        let deltas: HashMap<Node, Counters> = partners
            .iter()
            .map(|(node, record)| (*node, record.personal.clone()))
            .collect();
        let changed = teams
            .apply(&mut genealogy, &edges, &deltas, &partners)
            .expect("applied");
        // n0 … n8 have subtrees of 40 … 32 partners.
        assert_eq!(changed.len(), 9);
        for (depth, node) in nodes.iter().enumerate() {
            let expected = i64::try_from(40 - depth).expect("small");
            assert_eq!(
                orders(&teams.total(&genealogy, *node, &partners)),
                expected,
                "n{depth}"
            );
            assert_eq!(teams.is_hub(*node), depth <= 8);
        }
    }

    #[test]
    fn a_team_that_moves_leaves_the_old_hubs_and_reaches_the_new() {
        let (mut genealogy, nodes, mut partners) = chain(40);
        let mut teams = Teams::default();
        let edges: Vec<Edge> = nodes
            .windows(2)
            .map(|pair| (pair[1], None, Some(pair[0])))
            .collect();
        let deltas: HashMap<Node, Counters> = partners
            .iter()
            .map(|(node, record)| (*node, record.personal.clone()))
            .collect();
        teams
            .apply(&mut genealogy, &edges, &deltas, &partners)
            .expect("applied");
        // A new root r; n20 (a small team of 20) moves from n19 to r, and sells once more.
        let root = genealogy.node("r").expect("node");
        partners.insert(root, PartnerRecord::default());
        let mut more = Counters::default();
        more.add(LocalDay(20_001), Counter::Orders, 1);
        partners
            .get_mut(&nodes[20])
            .expect("n20")
            .personal
            .add_all(&more, 1);
        genealogy.set_parent(nodes[20], Some(root)).expect("edge");
        let edges = vec![(nodes[20], Some(nodes[19]), Some(root))];
        let needs = teams
            .needs(&mut genealogy, &edges, &[nodes[20]])
            .expect("needs");
        assert!(
            needs.partners.contains(&nodes[39]),
            "n20's small team is summed"
        );
        let deltas = HashMap::from([(nodes[20], more)]);
        teams
            .apply(&mut genealogy, &edges, &deltas, &partners)
            .expect("applied");
        assert_eq!(orders(&teams.total(&genealogy, nodes[0], &partners)), 20);
        assert_eq!(orders(&teams.total(&genealogy, nodes[8], &partners)), 12);
        assert_eq!(orders(&teams.total(&genealogy, root, &partners)), 21);
        assert!(teams.is_hub(nodes[8]), "a hub stays one");
        assert!(!teams.is_hub(root), "21 partners are not a hub");
    }
}
