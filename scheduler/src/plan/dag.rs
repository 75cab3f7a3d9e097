//! A job's dependency graph: edges from tables (a reader runs after the writers of what it reads)
//! and from `depends_on`; cycles reported with their path.

use std::collections::HashSet;

/// Why task A runs after task B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Because {
    /// A reads this table, which B writes.
    Table(String),
    /// A lists B in `depends_on`.
    Explicit,
}

/// `deps[a]` = the tasks `a` runs after, each with the reason.
pub(crate) type Deps = Vec<Vec<(usize, Because)>>;

/// Every distinct cycle reachable by depth-first search, each as a path of task indices starting
/// at its smallest index (so the same cycle found twice is reported once).
pub(crate) fn find_cycles(deps: &Deps) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; deps.len()];
    let mut seen: HashSet<Vec<usize>> = HashSet::new();
    let mut cycles = Vec::new();
    for root in 0..deps.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge to try); the stack *is* the current path.
        let mut stack = vec![(root, 0usize)];
        mark[root] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some((succ, _)) = deps[node].get(*next) {
                *next += 1;
                match mark[*succ] {
                    Mark::New => {
                        mark[*succ] = Mark::OnPath;
                        stack.push((*succ, 0));
                    }
                    Mark::OnPath => {
                        let from = stack.iter().position(|(n, _)| n == succ).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|(n, _)| *n).collect();
                        let min = cycle.iter().enumerate().min_by_key(|(_, n)| **n).map_or(0, |(i, _)| i);
                        cycle.rotate_left(min);
                        if seen.insert(cycle.clone()) {
                            cycles.push(cycle);
                        }
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(usize, usize)], n: usize) -> Deps {
        let mut deps = vec![vec![]; n];
        for (a, b) in edges {
            deps[*a].push((*b, Because::Explicit));
        }
        deps
    }

    #[test]
    fn finds_cycles_with_their_path() {
        assert!(find_cycles(&graph(&[(1, 0), (2, 1), (2, 0)], 3)).is_empty());
        assert_eq!(find_cycles(&graph(&[(0, 1), (1, 2), (2, 0)], 3)), vec![vec![0, 1, 2]]);
        assert_eq!(find_cycles(&graph(&[(3, 1), (1, 2), (2, 1)], 4)), vec![vec![1, 2]]);
    }

    #[test]
    fn deep_chains_do_not_overflow_the_stack() {
        let n = 200_000;
        let edges: Vec<_> = (1..n).map(|i| (i, i - 1)).collect();
        assert!(find_cycles(&graph(&edges, n)).is_empty());
    }
}
