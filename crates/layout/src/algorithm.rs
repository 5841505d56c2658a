//! The layout computation itself.
//!
//! Pipeline of [`compute_layout`]:
//! 1. **Candidates**: `Active` nodes passing `require`, plus (first attempt) `Down` nodes that
//!    already hold slots in `previous`. Zero-capacity nodes drop out unless all are zero.
//! 2. **Targets**: how many replica slots each candidate should hold. Real-valued shares come
//!    from capacity-proportional *water filling* under caps (a node holds a partition at most
//!    once, so ≤ P slots; a zone holds at most `c` replicas of each partition, so ≤ P·c slots;
//!    a `Down` node holds at most what it already has), first over non-`avoid` nodes, then the
//!    overflow over `avoid` nodes. Each node ends with its share rounded down or up.
//! 3. **Assignment**: with no usable previous layout, shares are rounded (larger fraction,
//!    then `prefer`, then id) and a wrap-around fill realises them exactly (spreading each zone
//!    evenly over partitions). With a previous layout, a min-cost flow (source → partition →
//!    (partition, zone) → node → sink) meets every floor, then keeps the largest possible
//!    number of previous (partition, node) pairs, choosing the round-ups accordingly.
//! 4. **Leaders**: a second min-cost flow picks each partition's first replica with convex
//!    per-node costs (most even spread), then keeping the previous leader, then `prefer`.
//!
//! If step 3 is infeasible (only possible when `Down` nodes pin slots), the zone cap is relaxed
//! step by step, and as a last resort `Down` nodes' slots are no longer honoured.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use crate::{Layout, LayoutError, NodeSpec, NodeState, PlacementPolicy, MAX_PARTITIONS};

/// Tolerance for floating-point comparisons on slot shares (values are at most 2^16·R, so
/// accumulated error is many orders of magnitude below this).
const EPS: f64 = 1e-7;

/// One node that may hold replicas in this computation.
#[derive(Clone, Debug)]
pub(crate) struct Cand {
    /// Index into the caller's node list.
    pub node: usize,
    /// Weight (capacity, or 1 when every candidate has zero capacity).
    pub weight: f64,
    /// Most slots it may hold: P for active nodes, its current slot count for `Down` nodes.
    pub cap: usize,
    /// 0 = normal, 1 = matches an `avoid` selector (filled only with the overflow).
    pub tier: u8,
    /// Index of its failure domain in the sorted zone list.
    pub zone: usize,
    /// Matches a `prefer` selector.
    pub prefer: bool,
    /// `Active` (may receive new slots) as opposed to `Down` (may only keep slots).
    pub active: bool,
    /// Slots it holds in the previous layout.
    pub held: usize,
}

/// Everything derived from the inputs that one attempt needs.
pub(crate) struct Problem<'a> {
    pub nodes: &'a [NodeSpec],
    pub partitions: usize,
    pub replication: usize,
    /// Candidates sorted by node id.
    pub cands: Vec<Cand>,
    /// Number of candidates per zone.
    pub zone_sizes: Vec<usize>,
}

impl Problem<'_> {
    /// Smallest per-partition zone cap `c` such that the zones can hold R replicas:
    /// `sum_z min(n_z, c) >= R`. It is 1 (distinct zones) whenever there are ≥ R zones.
    pub fn min_zone_cap(&self) -> usize {
        (1..=self.replication)
            .find(|&c| self.zone_sizes.iter().map(|&n| n.min(c)).sum::<usize>() >= self.replication)
            .unwrap_or(self.replication)
    }

    fn id(&self, c: usize) -> &str {
        &self.nodes[self.cands[c].node].id
    }
}

/// Computes a layout of `partitions` partitions with `replication` replicas each.
///
/// Guarantees (see the crate docs for the rule order):
/// - every partition has exactly `R` distinct replicas, `R = min(replication, candidates)`
///   where candidates are the eligible `Active` nodes plus the `Down` nodes that keep slots;
/// - replicas only live on candidates: never on `Draining`/`Removed` nodes, nodes failing a
///   `require` selector, or (when some capacity is non-zero) zero-capacity nodes;
/// - at most `c` replicas per zone in each partition, `c` minimal (1 when zones ≥ R);
/// - each node's slot count is within one of its capacity-weighted share under those caps;
/// - given `previous` with the same partition count, the number of kept (partition, node)
///   pairs is the maximum possible under the rules above; a `previous` with another partition
///   count is ignored except for its version;
/// - `version` is `previous.version + 1`, or 1.
///
/// Errors: [`LayoutError::InvalidPartitions`] unless `partitions` is a power of two in
/// `1..=65536`; [`LayoutError::InvalidReplication`] for 0; [`LayoutError::DuplicateNode`];
/// [`LayoutError::NoEligibleNodes`] when no `Active` node passes the policy (unless every
/// node is `Down` and their held slots still cover the whole previous layout, which is then
/// kept as is).
pub fn compute_layout(
    nodes: &[NodeSpec],
    partitions: u32,
    replication: usize,
    policy: &PlacementPolicy,
    previous: Option<&Layout>,
) -> Result<Layout, LayoutError> {
    if partitions == 0 || !partitions.is_power_of_two() || partitions > MAX_PARTITIONS {
        return Err(LayoutError::InvalidPartitions(partitions));
    }
    if replication == 0 {
        return Err(LayoutError::InvalidReplication(replication));
    }
    let mut seen = BTreeSet::new();
    for n in nodes {
        if !seen.insert(n.id.as_str()) {
            return Err(LayoutError::DuplicateNode(n.id.clone()));
        }
    }
    let version = previous.map_or(1, |l| l.version + 1);
    let p_count = partitions as usize;
    // A previous layout with another partition count describes different key ranges: none of
    // its assignments can be "kept", so it only contributes its version.
    let prev = previous.filter(|l| l.partitions == partitions && l.assignments.len() == p_count);

    let held = held_counts(nodes, prev);
    let any_down_holder = nodes
        .iter()
        .enumerate()
        .any(|(i, n)| n.state == NodeState::Down && policy.allows(n) && held[i] > 0);

    let mut last_r = replication;
    for honour_down in [true, false] {
        if !honour_down && !any_down_holder {
            break; // the second attempt would be identical to the first
        }
        let Some(problem) = build_problem(nodes, policy, p_count, replication, &held, honour_down)
        else {
            continue;
        };
        last_r = problem.replication;
        for c in problem.min_zone_cap()..=problem.replication {
            let Some(shares) = real_shares(&problem, c) else {
                continue;
            };
            let assign = match prev {
                None => integer_targets(&problem, c, &shares).map(|t| wrap_around(&problem, &t)),
                Some(prev) => flow_assign(&problem, c, &shares, prev),
            };
            if let Some(assign) = assign {
                let assignments = order_replicas(&problem, assign, prev);
                return Ok(Layout {
                    version,
                    partitions,
                    replication: problem.replication,
                    assignments,
                });
            }
        }
    }
    if !nodes
        .iter()
        .any(|n| n.state == NodeState::Active && policy.allows(n))
    {
        return Err(LayoutError::NoEligibleNodes);
    }
    Err(LayoutError::Infeasible {
        partitions,
        replication: last_r,
    })
}

/// Distinct slots each node (by index in `nodes`) holds in `prev`.
fn held_counts(nodes: &[NodeSpec], prev: Option<&Layout>) -> Vec<usize> {
    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    if let Some(prev) = prev {
        for reps in &prev.assignments {
            let distinct: BTreeSet<&str> = reps.iter().map(String::as_str).collect();
            for n in distinct {
                *by_id.entry(n).or_insert(0) += 1;
            }
        }
    }
    nodes
        .iter()
        .map(|n| by_id.get(n.id.as_str()).copied().unwrap_or(0))
        .collect()
}

/// Selects the candidates and derives R and the zones. `None` when no candidate is left.
pub(crate) fn build_problem<'a>(
    nodes: &'a [NodeSpec],
    policy: &PlacementPolicy,
    partitions: usize,
    replication: usize,
    held: &[usize],
    honour_down: bool,
) -> Option<Problem<'a>> {
    let mut idx: Vec<usize> = (0..nodes.len())
        .filter(|&i| {
            let n = &nodes[i];
            policy.allows(n)
                && match n.state {
                    NodeState::Active => true,
                    NodeState::Down => honour_down && held[i] > 0,
                    NodeState::Draining | NodeState::Removed => false,
                }
        })
        .collect();
    // Zero capacity means "stores nothing" — but if nobody has capacity, treat all as equal
    // rather than refusing to place anything (useful for tests and tiny dev clusters).
    let all_zero = idx.iter().all(|&i| nodes[i].capacity == 0);
    if !all_zero {
        idx.retain(|&i| nodes[i].capacity > 0);
    }
    if idx.is_empty() {
        return None;
    }
    idx.sort_by(|&a, &b| nodes[a].id.cmp(&nodes[b].id));

    // A node without a zone is its own failure domain; the (0, ..)/(1, ..) tag keeps such
    // pseudo-zones from colliding with a real zone that happens to share the node's name.
    let zone_key = |n: &NodeSpec| match &n.zone {
        Some(z) => (0u8, z.clone()),
        None => (1u8, n.id.clone()),
    };
    let zone_index: BTreeMap<(u8, String), usize> = idx
        .iter()
        .map(|&i| zone_key(&nodes[i]))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(k, z)| (z, k))
        .collect();
    let mut zone_sizes = vec![0; zone_index.len()];
    let cands: Vec<Cand> = idx
        .iter()
        .map(|&i| {
            let n = &nodes[i];
            let zone = zone_index[&zone_key(n)];
            zone_sizes[zone] += 1;
            let active = n.state == NodeState::Active;
            Cand {
                node: i,
                weight: if all_zero { 1.0 } else { n.capacity as f64 },
                cap: if active { partitions } else { held[i] },
                tier: u8::from(policy.avoids(n)),
                zone,
                prefer: policy.prefers(n),
                active,
                held: held[i],
            }
        })
        .collect();
    let replication = replication.min(cands.len());
    Some(Problem {
        nodes,
        partitions,
        replication,
        cands,
        zone_sizes,
    })
}

/// Real-valued slot shares: capacity-proportional water filling under node and zone caps,
/// tier by tier (avoid nodes only get what tier 0 cannot hold). Returns `None` if the caps
/// cannot hold `P·R` slots at all.
///
/// A `Down` node cannot gain slots, but capping its share at what it holds would hand the
/// difference to other nodes and make them move data on every outage. So it is first weighed
/// like an active node, and capped at its holding only where that holding is below its
/// rounded-down share (then it really cannot fill it).
pub(crate) fn real_shares(problem: &Problem<'_>, c: usize) -> Option<Vec<f64>> {
    let mut caps: Vec<usize> = vec![problem.partitions; problem.cands.len()];
    loop {
        let shares = water_fill(problem, c, &caps)?;
        let mut changed = false;
        for (i, cand) in problem.cands.iter().enumerate() {
            if !cand.active && caps[i] > cand.held && floor_share(shares[i], caps[i]) > cand.held {
                caps[i] = cand.held;
                changed = true;
            }
        }
        if !changed {
            return Some(shares);
        }
    }
}

/// Water filling with per-node caps `caps` (see [`real_shares`]).
fn water_fill(problem: &Problem<'_>, c: usize, caps: &[usize]) -> Option<Vec<f64>> {
    let cands = &problem.cands;
    let zone_cap: Vec<f64> = problem
        .zone_sizes
        .iter()
        .map(|&n| (problem.partitions * n.min(c)) as f64)
        .collect();
    let mut share = vec![0.0f64; cands.len()];
    let mut zone_used = vec![0.0f64; zone_cap.len()];
    let mut rem = (problem.partitions * problem.replication) as f64;
    for tier in 0..=1u8 {
        let mut fixed: Vec<bool> = cands.iter().map(|c| c.tier != tier).collect();
        loop {
            if rem <= EPS {
                break;
            }
            let free: Vec<usize> = (0..cands.len())
                .filter(|&i| !fixed[i] && zone_cap[cands[i].zone] - zone_used[cands[i].zone] > EPS)
                .collect();
            if free.is_empty() {
                break;
            }
            let w: f64 = free.iter().map(|&i| cands[i].weight).sum();
            let lambda = rem / w;
            // Zones whose free members would overflow the zone's room at this λ saturate;
            // λ only grows as things get fixed, so they would overflow at any later λ too.
            let mut demand = vec![0.0f64; zone_cap.len()];
            for &i in &free {
                demand[cands[i].zone] += (cands[i].weight * lambda).min(caps[i] as f64);
            }
            let mut progressed = false;
            for z in 0..zone_cap.len() {
                let room = zone_cap[z] - zone_used[z];
                if demand[z] > room + EPS {
                    let members: Vec<usize> = free
                        .iter()
                        .copied()
                        .filter(|&i| cands[i].zone == z)
                        .collect();
                    let items: Vec<(f64, f64)> = members
                        .iter()
                        .map(|&i| (cands[i].weight, caps[i] as f64))
                        .collect();
                    for (k, v) in proportional_with_caps(room, &items).into_iter().enumerate() {
                        share[members[k]] = v;
                        fixed[members[k]] = true;
                    }
                    zone_used[z] += room;
                    rem -= room;
                    progressed = true;
                }
            }
            if progressed {
                continue;
            }
            // No zone overflows: nodes over their own cap are fixed at it.
            for &i in &free {
                let cap = caps[i] as f64;
                if cands[i].weight * lambda > cap + EPS {
                    share[i] = cap;
                    fixed[i] = true;
                    zone_used[cands[i].zone] += cap;
                    rem -= cap;
                    progressed = true;
                }
            }
            if progressed {
                continue;
            }
            for &i in &free {
                share[i] = cands[i].weight * lambda;
                fixed[i] = true;
                zone_used[cands[i].zone] += share[i];
            }
            rem = 0.0;
        }
    }
    (rem <= 1e-6).then_some(share)
}

/// Splits `amount` proportionally to weight among `(weight, cap)` items, capping each item and
/// redistributing the excess. Assumes the caps can hold `amount`.
fn proportional_with_caps(amount: f64, items: &[(f64, f64)]) -> Vec<f64> {
    let mut out = vec![0.0; items.len()];
    let mut fixed = vec![false; items.len()];
    let mut rem = amount;
    loop {
        let free: Vec<usize> = (0..items.len()).filter(|&i| !fixed[i]).collect();
        if free.is_empty() || rem <= EPS {
            return out;
        }
        let w: f64 = free.iter().map(|&i| items[i].0).sum();
        let lambda = rem / w;
        let mut capped = false;
        for &i in &free {
            if items[i].0 * lambda > items[i].1 + EPS {
                out[i] = items[i].1;
                fixed[i] = true;
                rem -= items[i].1;
                capped = true;
            }
        }
        if !capped {
            for &i in &free {
                out[i] = items[i].0 * lambda;
            }
            return out;
        }
    }
}

/// Largest acceptable rounding error on the float side of `floor`.
fn floor_share(share: f64, cap: usize) -> usize {
    ((share + EPS).floor().max(0.0) as usize).min(cap)
}

/// Order in which candidates get rounded up: non-avoid before avoid; nodes already holding
/// more than their rounded-down share (keeps recomputation a fixed point); larger fractional
/// part; `prefer` nodes; node id.
fn rounding_order(problem: &Problem<'_>, shares: &[f64], floors: &[usize]) -> Vec<usize> {
    let cands = &problem.cands;
    let frac: Vec<f64> = shares
        .iter()
        .zip(floors)
        .map(|(&s, &v)| s - v as f64)
        .collect();
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| (cands[i].tier, cands[i].held <= floors[i], !cands[i].prefer);
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0)
            .then(ka.1.cmp(&kb.1))
            .then(frac[b].total_cmp(&frac[a]))
            .then(ka.2.cmp(&kb.2))
            .then_with(|| problem.id(a).cmp(problem.id(b)))
    });
    order
}

/// Integer slot targets summing to P·R, each within one of its real share, rounding up in
/// [`rounding_order`]. Used when there is no previous layout (otherwise the flow chooses the
/// rounding that moves the least data).
pub(crate) fn integer_targets(
    problem: &Problem<'_>,
    c: usize,
    shares: &[f64],
) -> Option<Vec<usize>> {
    let cands = &problem.cands;
    let total = problem.partitions * problem.replication;
    let zone_cap: Vec<usize> = problem
        .zone_sizes
        .iter()
        .map(|&n| problem.partitions * n.min(c))
        .collect();
    let mut t: Vec<usize> = shares
        .iter()
        .zip(cands)
        .map(|(&s, c)| floor_share(s, c.cap))
        .collect();
    let frac: Vec<f64> = shares.iter().zip(&t).map(|(&s, &v)| s - v as f64).collect();
    let order = rounding_order(problem, shares, &t);
    let mut zone_used = vec![0usize; zone_cap.len()];
    for (i, c) in cands.iter().enumerate() {
        zone_used[c.zone] += t[i];
    }
    let mut sum: usize = t.iter().sum();
    // Floors can overshoot by a hair when a share sits within EPS below an integer.
    for &i in order.iter().rev() {
        if sum <= total {
            break;
        }
        if t[i] > 0 {
            t[i] -= 1;
            zone_used[cands[i].zone] -= 1;
            sum -= 1;
        }
    }
    let room = |i: usize, t: &[usize], zu: &[usize]| {
        t[i] < cands[i].cap && zu[cands[i].zone] < zone_cap[cands[i].zone]
    };
    for &i in &order {
        if sum < total && frac[i] > EPS && room(i, &t, &zone_used) {
            t[i] += 1;
            zone_used[cands[i].zone] += 1;
            sum += 1;
        }
    }
    while sum < total {
        let mut progressed = false;
        for &i in &order {
            if sum < total && room(i, &t, &zone_used) {
                t[i] += 1;
                zone_used[cands[i].zone] += 1;
                sum += 1;
                progressed = true;
            }
        }
        if !progressed {
            return None;
        }
    }
    Some(t)
}

/// Realises `targets` without a previous layout: lay all slots out zone by zone (node by node
/// inside a zone) and deal slot `k` to partition `k mod P`. A node's ≤ P consecutive slots hit
/// distinct partitions, and a zone's ≤ P·c consecutive slots hit each partition at most c times
/// (and as evenly as its total allows).
fn wrap_around(problem: &Problem<'_>, targets: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..problem.cands.len()).collect();
    order.sort_by_key(|&i| problem.cands[i].zone); // stable: ids stay sorted inside a zone
    let mut assign = vec![Vec::with_capacity(problem.replication); problem.partitions];
    let mut k = 0usize;
    for i in order {
        for _ in 0..targets[i] {
            assign[k % problem.partitions].push(i);
            k += 1;
        }
    }
    assign
}

/// Realises the shares with a min-cost flow that keeps as many previous (partition, node)
/// pairs as possible. Each node may hold `floor(share)` slots, plus one more (the rounding).
/// Costs are lexicographic: fewest round-ups (so every node reaches its floor), then fewest
/// copied slots, then round-ups in [`rounding_order`]. So which nodes round up is decided by
/// movement first, unlike the fresh case. `None` if the shares cannot be met under zone cap
/// `c`.
fn flow_assign(
    problem: &Problem<'_>,
    c: usize,
    shares: &[f64],
    prev: &Layout,
) -> Option<Vec<Vec<usize>>> {
    let p_count = problem.partitions;
    let nz = problem.zone_sizes.len();
    let cands = &problem.cands;
    let floors: Vec<usize> = shares
        .iter()
        .zip(cands)
        .map(|(&s, c)| floor_share(s, c.cap))
        .collect();
    // An avoided node with a zero share must stay empty: rounding it up would use it when it
    // is not needed. Everyone else may round up once (still within one of its share).
    let may_round_up =
        |i: usize| floors[i] < cands[i].cap && (cands[i].tier == 0 || shares[i] > EPS);
    let mut rank = vec![0i64; cands.len()];
    for (k, &i) in rounding_order(problem, shares, &floors).iter().enumerate() {
        rank[i] = k as i64 + 1;
    }
    let move_cost = rank.iter().sum::<i64>() + 1;
    // Every round-up beyond the necessary ones means some node sits below its floor, i.e.
    // more than one slot under its share. Pricing a round-up above any possible movement
    // saving makes the flow use exactly the necessary number, so floors are met.
    let total = (p_count * problem.replication) as i64;
    let round_up_cost = move_cost * (total + 1);
    let by_id: BTreeMap<&str, usize> = (0..cands.len()).map(|i| (problem.id(i), i)).collect();
    let kept: Vec<BTreeSet<usize>> = prev
        .assignments
        .iter()
        .map(|r| {
            r.iter()
                .filter_map(|n| by_id.get(n.as_str()).copied())
                .collect()
        })
        .collect();

    let (s, t) = (0, 1);
    let part_v = |p: usize| 2 + p;
    let pz_v = |p: usize, z: usize| 2 + p_count + p * nz + z;
    let node_v = |i: usize| 2 + p_count + p_count * nz + i;
    let mut g = Flow::new(2 + p_count + p_count * nz + cands.len());
    for p in 0..p_count {
        g.add_edge(s, part_v(p), problem.replication as i64, 0);
        for (z, &size) in problem.zone_sizes.iter().enumerate() {
            g.add_edge(part_v(p), pz_v(p, z), size.min(c) as i64, 0);
        }
    }
    let mut slot_edges = Vec::new();
    for (p, kept_here) in kept.iter().enumerate() {
        for (i, cand) in cands.iter().enumerate() {
            let is_kept = kept_here.contains(&i);
            if (floors[i] == 0 && !may_round_up(i)) || !(cand.active || is_kept) {
                continue;
            }
            // Cost = "this slot must be copied": the flow minimises data movement.
            let cost = if is_kept { 0 } else { move_cost };
            let e = g.add_edge(pz_v(p, cand.zone), node_v(i), 1, cost);
            slot_edges.push((p, i, e));
        }
    }
    for i in 0..cands.len() {
        if floors[i] > 0 {
            g.add_edge(node_v(i), t, floors[i] as i64, 0);
        }
        if may_round_up(i) {
            g.add_edge(node_v(i), t, 1, round_up_cost + rank[i]);
        }
    }
    let need = (p_count * problem.replication) as i64;
    // Phase A: as many free (kept) slots as possible; cost stays 0, so this is a min-cost flow
    // for its value and phase B may start from it with zero potentials.
    let mut flow = g.max_flow_zero_cost(s, t);
    // Phase B: complete it along cheapest paths (may re-route kept slots if that is what it
    // takes to meet every target).
    flow += g.min_cost_flow(s, t, need - flow);
    if flow != need {
        return None;
    }
    let mut assign = vec![Vec::with_capacity(problem.replication); p_count];
    for (p, i, e) in slot_edges {
        if g.cap[e] == 0 {
            assign[p].push(i);
        }
    }
    Some(assign)
}

/// Orders each partition's replicas: chosen leader first, then kept replicas in their previous
/// order, then new ones (`prefer` first, then by id).
fn order_replicas(
    problem: &Problem<'_>,
    assign: Vec<Vec<usize>>,
    prev: Option<&Layout>,
) -> Vec<Vec<String>> {
    let cands = &problem.cands;
    let leaders = choose_leaders(problem, &assign, prev);
    assign
        .into_iter()
        .enumerate()
        .map(|(p, reps)| {
            let prev_reps = prev.map_or(&[][..], |l| l.replicas(p as u32));
            let mut ordered: Vec<usize> = reps;
            ordered.sort_by(|&a, &b| {
                let pos = |i: usize| {
                    prev_reps
                        .iter()
                        .position(|n| n == problem.id(i))
                        .unwrap_or(usize::MAX)
                };
                pos(a)
                    .cmp(&pos(b))
                    .then(cands[b].prefer.cmp(&cands[a].prefer))
                    .then_with(|| problem.id(a).cmp(problem.id(b)))
            });
            if let Some(l) = leaders[p] {
                if let Some(k) = ordered.iter().position(|&i| i == l) {
                    let l = ordered.remove(k);
                    ordered.insert(0, l);
                }
            }
            ordered
                .into_iter()
                .map(|i| problem.id(i).to_string())
                .collect()
        })
        .collect()
}

/// Picks one leader per partition with a min-cost flow. Each node's k-th leadership costs
/// `BIG·(2k+1)` (the increments of k², so the flow minimises the sum of squared leader counts:
/// the most even spread the replica sets allow). Below that, `+2` for not keeping the previous
/// leader and `+1` for a non-`prefer` node; BIG exceeds their largest possible total so they
/// only break ties. `Down` replicas lead only partitions without an active replica.
fn choose_leaders(
    problem: &Problem<'_>,
    assign: &[Vec<usize>],
    prev: Option<&Layout>,
) -> Vec<Option<usize>> {
    let p_count = assign.len();
    let cands = &problem.cands;
    let big = 3 * p_count as i64 + 1;
    let (s, t) = (0, 1);
    let node_v = |i: usize| 2 + p_count + i;
    let mut g = Flow::new(2 + p_count + cands.len());
    let mut slots = vec![0usize; cands.len()];
    let mut edges = Vec::new();
    for (p, reps) in assign.iter().enumerate() {
        g.add_edge(s, 2 + p, 1, 0);
        let prev_leader = prev.and_then(|l| l.leader(p as u32));
        let any_active = reps.iter().any(|&i| cands[i].active);
        for &i in reps {
            slots[i] += 1;
            if any_active && !cands[i].active {
                continue;
            }
            let keep = prev_leader.is_some_and(|l| l == problem.id(i));
            let cost = if keep { 0 } else { 2 } + i64::from(!cands[i].prefer);
            edges.push((p, i, g.add_edge(2 + p, node_v(i), 1, cost)));
        }
    }
    for (i, &n) in slots.iter().enumerate() {
        for k in 0..n as i64 {
            g.add_edge(node_v(i), t, 1, big * (2 * k + 1));
        }
    }
    g.min_cost_flow(s, t, p_count as i64);
    let mut leaders = vec![None; p_count];
    for (p, i, e) in edges {
        if g.cap[e] == 0 {
            leaders[p] = Some(i);
        }
    }
    leaders
}

/// A small min-cost flow network (adjacency lists; edge `e ^ 1` is the reverse of `e`).
struct Flow {
    adj: Vec<Vec<usize>>,
    to: Vec<usize>,
    cap: Vec<i64>,
    cost: Vec<i64>,
}

impl Flow {
    fn new(n: usize) -> Self {
        Self {
            adj: vec![Vec::new(); n],
            to: Vec::new(),
            cap: Vec::new(),
            cost: Vec::new(),
        }
    }

    /// Adds `u → v` and returns the forward edge's index.
    fn add_edge(&mut self, u: usize, v: usize, cap: i64, cost: i64) -> usize {
        let e = self.to.len();
        self.adj[u].push(e);
        self.to.push(v);
        self.cap.push(cap);
        self.cost.push(cost);
        self.adj[v].push(e + 1);
        self.to.push(u);
        self.cap.push(0);
        self.cost.push(-cost);
        e
    }

    fn augment(&mut self, s: usize, t: usize, via: &[usize], limit: i64) -> i64 {
        let mut f = limit;
        let mut v = t;
        while v != s {
            let e = via[v];
            f = f.min(self.cap[e]);
            v = self.to[e ^ 1];
        }
        let mut v = t;
        while v != s {
            let e = via[v];
            self.cap[e] -= f;
            self.cap[e ^ 1] += f;
            v = self.to[e ^ 1];
        }
        f
    }

    /// Max flow using only zero-cost residual edges (BFS augmenting paths).
    fn max_flow_zero_cost(&mut self, s: usize, t: usize) -> i64 {
        let n = self.adj.len();
        let mut total = 0;
        loop {
            let mut via = vec![usize::MAX; n];
            let mut seen = vec![false; n];
            seen[s] = true;
            let mut q = VecDeque::from([s]);
            while let Some(u) = q.pop_front() {
                if u == t {
                    break;
                }
                for &e in &self.adj[u] {
                    let v = self.to[e];
                    if !seen[v] && self.cap[e] > 0 && self.cost[e] == 0 {
                        seen[v] = true;
                        via[v] = e;
                        q.push_back(v);
                    }
                }
            }
            if !seen[t] {
                return total;
            }
            total += self.augment(s, t, &via, i64::MAX);
        }
    }

    /// Successive shortest paths (Dijkstra with potentials) pushing up to `limit` more units.
    /// Requires the current residual graph to have no negative reduced cost, which holds for
    /// a fresh network with non-negative costs or after [`Flow::max_flow_zero_cost`].
    fn min_cost_flow(&mut self, s: usize, t: usize, limit: i64) -> i64 {
        let n = self.adj.len();
        let mut h = vec![0i64; n];
        let mut total = 0;
        while total < limit {
            let mut dist = vec![i64::MAX; n];
            let mut done = vec![false; n];
            let mut via = vec![usize::MAX; n];
            dist[s] = 0;
            let mut heap = BinaryHeap::from([Reverse((0i64, s))]);
            while let Some(Reverse((d, u))) = heap.pop() {
                if done[u] {
                    continue;
                }
                done[u] = true;
                if u == t {
                    break;
                }
                for &e in &self.adj[u] {
                    if self.cap[e] <= 0 {
                        continue;
                    }
                    let v = self.to[e];
                    let nd = d + self.cost[e] + h[u] - h[v];
                    if nd < dist[v] {
                        dist[v] = nd;
                        via[v] = e;
                        heap.push(Reverse((nd, v)));
                    }
                }
            }
            if !done[t] {
                break;
            }
            // Early exit keeps reduced costs non-negative if unsettled vertices are treated as
            // being at distance dist[t] (they are at least that far).
            let dt = dist[t];
            for v in 0..n {
                h[v] += if done[v] { dist[v] } else { dt };
            }
            total += self.augment(s, t, &via, limit - total);
        }
        total
    }
}
