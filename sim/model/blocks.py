"""Blocks of rows: the order in which the compiled update visits a stack's rows, and where it cuts them.

A large run goes through its days block by block (kernel.advance), each block all the days of a phase
before the next, so a block's state, keys and records stay in a core's cache. Partners and classmates
read each other's attendance, so a block holds whole pairs and classes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# a run of more people goes through its days in blocks of about this many rows: a block's state, keys and
# records (~800 bytes a person) stay in a core's cache (L2, 1-4 MB) across the days
BLOCK_ROWS = 2048


@njit(cache=True)
def visit_blocks(offsets, partner, group, n_groups, block_rows):
    """The order to visit each run's rows in, and where its blocks begin: at most about `block_rows` rows
    each, and never splitting people tied by a partner or a class (who read each other's attendance).

    Returns (visit, cuts, run_cut): block b is rows visit[cuts[b]:cuts[b + 1]], and run r's blocks are
    run_cut[r]..run_cut[r + 1] - 1. A run that fits in one block, or has no ties, is visited in row order."""
    n_all, n_runs = partner.shape[0], offsets.shape[0] - 1
    root = np.arange(n_all)  # union-find over ties, each set's root its lowest row
    first_of = np.full(max(n_groups, 1), -1)
    for i in range(n_all):
        for j in (partner[i], first_of[group[i]] if group[i] >= 0 else -1):
            if j < 0:
                continue
            a, b = i, j
            while root[a] != a:
                a = root[a]
            while root[b] != b:
                b = root[b]
            root[max(a, b)] = min(a, b)
        if group[i] >= 0 and first_of[group[i]] < 0:
            first_of[group[i]] = i
    for i in range(n_all):
        a = i
        while root[a] != a:
            a = root[a]
        root[i] = a
    visit = np.arange(n_all)
    cuts = np.empty(n_all + 1, dtype=np.int64)
    run_cut = np.empty(n_runs + 1, dtype=np.int64)
    n_cuts = 0
    for r in range(n_runs):
        first, last = offsets[r], offsets[r + 1]
        run_cut[r] = n_cuts
        if last - first > block_rows:  # ties together: rows sorted by their set's lowest row (stable)
            visit[first:last] = first + np.argsort(root[first:last], kind="mergesort")
        start = first
        cuts[n_cuts] = first
        n_cuts += 1
        for j in range(first + 1, last):
            if j - start >= block_rows and root[visit[j]] != root[visit[j - 1]]:
                cuts[n_cuts] = j
                n_cuts += 1
                start = j
    run_cut[n_runs] = n_cuts
    cuts[n_cuts] = n_all
    return visit, cuts[:n_cuts + 1].copy(), run_cut
