"""Point-in-time primitives: what was known about a key strictly before a moment.

Every history and link feature is one of three questions asked of *events* (a key, a time, maybe a
value) on behalf of *queries* (a key, a time):

- :func:`window_stats`: how many events, and their sum, with the same key in ``[t - window, t)``;
  and the time of the latest event before ``t``;
- :func:`distinct_in_window`: how many distinct members (e.g. claimants) other than the query's own
  had an event with the same key in ``[t - window, t)``;
- :func:`linked_groups`: the group of claimants joined through shared identifiers, built from the
  links of claims reported before ``t`` plus the query claim's own links, with its size and the
  confirmed fraud decided before ``t``.

Intervals are half-open: an event at exactly ``t`` is not seen, so claims reported at the same
moment never see each other. All three are vectorised (sorting and ``searchsorted``) or compiled
sweeps (numba), linear or ``n log n`` in the number of events.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NO_KEY = -1
"""Key code of a missing identifier: such queries get NaN, such events are ignored."""


def window_stats(
    ev_key: np.ndarray,
    ev_time: np.ndarray,
    ev_value: np.ndarray | None,
    q_key: np.ndarray,
    q_time: np.ndarray,
    window: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count and sum of events with the query's key in ``[t - window, t)`` (``window=None``: all of
    the past), and the time of the latest such event (NaN where none).

    Keys are non-negative integer codes (``NO_KEY`` for missing); times are int64 seconds.
    Queries with a missing key get NaN everywhere.
    """
    values = np.ones(len(ev_key)) if ev_value is None else np.asarray(ev_value, dtype=np.float64)
    return _window_stats(
        np.asarray(ev_key, dtype=np.int64),
        np.asarray(ev_time, dtype=np.int64),
        values,
        np.asarray(q_key, dtype=np.int64),
        np.asarray(q_time, dtype=np.int64),
        np.int64(-1 if window is None else window),
    )


@njit(cache=True)
def _window_stats(ev_key, ev_time, ev_value, q_key, q_time, window):  # pragma: no cover - compiled
    """:func:`window_stats` compiled: one call instead of a chain of array operations, each of whose
    fixed costs would outweigh the work on a live claim's short history. Events are sorted by (key,
    time); each query finds its key's segment and window bounds by binary search; sums are running
    sums that restart at each key, so a sum's rounding depends on that key's events only (the same
    for a whole table and for one live claim's history). ``window`` < 0: all of the past."""
    keep = ev_key != NO_KEY
    key, time, value = ev_key[keep], ev_time[keep], ev_value[keep]
    t0 = min(min(time.min(), 0) if len(time) else 0, min(q_time.min(), 0) if len(q_time) else 0)
    top = max(max(time.max(), 0) if len(time) else 0, max(q_time.max(), 0) if len(q_time) else 0)
    span = top - t0 + 2
    comp = key * span + (time - t0)
    order = np.argsort(comp, kind="mergesort")
    comp, value, time = comp[order], value[order], time[order]
    csum = np.empty(len(comp) + 1)
    csum[0] = 0.0
    total = 0.0
    for i in range(len(comp)):
        if i == 0 or comp[i] // span != comp[i - 1] // span:
            total = 0.0
        total += value[i]
        csum[i + 1] = total
    n = len(q_key)
    count, sums, last = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    for j in range(n):
        qk = q_key[j]
        if qk == NO_KEY:
            continue
        base = qk * span
        seg = np.searchsorted(comp, base)
        hi = np.searchsorted(comp, base + (q_time[j] - t0))
        lo = seg if window < 0 else np.searchsorted(comp, base + max(q_time[j] - window - t0, 0))
        count[j] = hi - lo
        sums[j] = (csum[hi] if hi > seg else 0.0) - (csum[lo] if lo > seg else 0.0)
        if hi > 0 and comp[hi - 1] // span == qk:
            last[j] = time[hi - 1]
    return count, sums, last


def distinct_in_window(
    ev_key: np.ndarray,
    ev_time: np.ndarray,
    ev_member: np.ndarray,
    q_key: np.ndarray,
    q_time: np.ndarray,
    q_member: np.ndarray,
    window: int,
    n_members: int,
) -> np.ndarray:
    """Distinct members other than the query's own with an event of the query's key in
    ``[t - window, t)``. Members are integer codes in ``[0, n_members)``; ``NO_KEY`` for missing
    members is allowed on queries (then nobody is excluded) and dropped from events."""
    ok = (ev_key != NO_KEY) & (ev_member != NO_KEY)
    ek, et, em = ev_key[ok], ev_time[ok], ev_member[ok]
    eo = np.lexsort((et, ek))
    qo = np.lexsort((q_time, q_key))
    out_sorted = _distinct_sweep(
        ek[eo].astype(np.int64),
        et[eo].astype(np.int64),
        em[eo].astype(np.int64),
        q_key[qo].astype(np.int64),
        q_time[qo].astype(np.int64),
        q_member[qo].astype(np.int64),
        np.int64(window),
        n_members,
    )
    out = np.empty(len(q_key))
    out[qo] = out_sorted
    out[q_key == NO_KEY] = np.nan
    return out


@njit(cache=True)
def _distinct_sweep(ek, et, em, qk, qt, qm, window, n_members):  # pragma: no cover - compiled
    counts = np.zeros(n_members, np.int64)
    out = np.empty(len(qk))
    n_ev = len(ek)
    lo = 0
    hi = 0
    distinct = 0
    cur = np.int64(-2)
    for i in range(len(qk)):
        k = qk[i]
        t = qt[i]
        if k != cur:
            for j in range(lo, hi):  # empty the window of the previous key
                counts[em[j]] -= 1
            distinct = 0
            while hi < n_ev and ek[hi] < k:
                hi += 1
            lo = hi
            cur = k
        while hi < n_ev and ek[hi] == k and et[hi] < t:
            m = em[hi]
            if counts[m] == 0:
                distinct += 1
            counts[m] += 1
            hi += 1
        while lo < hi and et[lo] < t - window:
            m = em[lo]
            counts[m] -= 1
            if counts[m] == 0:
                distinct -= 1
            lo += 1
        own = 0
        if qm[i] >= 0 and counts[qm[i]] > 0:
            own = 1
        out[i] = distinct - own
    return out


def linked_groups(
    claim_time: np.ndarray,
    claimant: np.ndarray,
    links: np.ndarray,
    decision_time: np.ndarray,
    decision_fraud: np.ndarray,
    n_nodes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """For each claim: the number of claimants in its claimant's linked group, and the confirmed
    fraud decided in that group, both as of the claim's report time.

    ``claimant``: node code of each claim's claimant (``NO_KEY`` if unknown); ``links``: a
    ``(claims, k)`` array of identifier node codes (``NO_KEY`` for missing). Claimant and identifier
    node codes share ``[0, n_nodes)`` and must not collide. ``decision_time``/``decision_fraud``:
    when each claim's investigation was decided (int64 seconds, or a value larger than every claim
    time if never) and whether it confirmed fraud. A claim sees the links of claims reported strictly
    before it plus its own, and fraud decided strictly before it.
    """
    order = np.argsort(claim_time, kind="stable")
    # a claim with no known claimant joins no group, so neither does its outcome
    dec = np.flatnonzero(decision_fraud.astype(bool) & (claimant != NO_KEY))
    dorder = dec[np.argsort(decision_time[dec], kind="stable")]
    size, fraud = _group_sweep(
        claim_time[order].astype(np.int64),
        claimant[order].astype(np.int64),
        links[order].astype(np.int64),
        decision_time[dorder].astype(np.int64),
        claimant[dorder].astype(np.int64),
        n_nodes,
    )
    out_size, out_fraud = np.empty(len(order)), np.empty(len(order))
    out_size[order], out_fraud[order] = size, fraud
    unknown = claimant == NO_KEY
    out_size[unknown], out_fraud[unknown] = np.nan, np.nan
    return out_size, out_fraud


@njit(cache=True)
def _find(parent, x):  # pragma: no cover - compiled
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@njit(cache=True)
def _union(parent, rank, members, fraud, a, b):  # pragma: no cover - compiled
    ra = _find(parent, a)
    rb = _find(parent, b)
    if ra == rb:
        return
    if rank[ra] < rank[rb]:
        ra, rb = rb, ra
    parent[rb] = ra
    members[ra] += members[rb]
    fraud[ra] += fraud[rb]
    if rank[ra] == rank[rb]:
        rank[ra] += 1


@njit(cache=True)
def _group_sweep(ct, cm, cl, dt, dm, n_nodes):  # pragma: no cover - compiled
    parent = np.arange(n_nodes)
    rank = np.zeros(n_nodes, np.int64)
    members = np.zeros(n_nodes, np.int64)
    fraud = np.zeros(n_nodes, np.float64)
    seen = np.zeros(n_nodes, np.bool_)
    n = len(ct)
    k = cl.shape[1]
    size_out = np.empty(n)
    fraud_out = np.empty(n)
    roots = np.empty(k + 1, np.int64)
    d = 0
    i = 0
    while i < n:
        t = ct[i]
        # fraud decided strictly before t joins the decided claim's group
        while d < len(dt) and dt[d] < t:
            fraud[_find(parent, dm[d])] += 1.0
            d += 1
        # every claim reported at t: its group = the distinct groups of its own nodes
        end = i
        while end < n and ct[end] == t:
            end += 1
        for q in range(i, end):
            if cm[q] < 0:
                size_out[q] = np.nan
                fraud_out[q] = np.nan
                continue
            nr = 0
            s = 0.0
            f = 0.0
            for j in range(k + 1):
                node = cm[q] if j == 0 else cl[q, j - 1]
                if node < 0:
                    continue
                r = _find(parent, node)
                dup = False
                for u in range(nr):
                    if roots[u] == r:
                        dup = True
                        break
                if dup:
                    continue
                roots[nr] = r
                nr += 1
                s += members[r]
                f += fraud[r]
            if not seen[cm[q]]:
                s += 1.0  # a claimant seen for the first time is a group of one
            size_out[q] = s
            fraud_out[q] = f
        # then the links of the claims reported at t join the graph
        for q in range(i, end):
            c = cm[q]
            if c < 0:
                continue
            if not seen[c]:
                seen[c] = True
                members[_find(parent, c)] += 1
            for j in range(k):
                if cl[q, j] >= 0:
                    _union(parent, rank, members, fraud, c, cl[q, j])
        i = end
    return size_out, fraud_out
