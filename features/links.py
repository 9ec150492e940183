"""Linked groups: which identifiers join claimants, and the search for the live claimants' groups.

A claimant's linked group is every claimant reachable through identifiers shared on claims
(:data:`GROUP_NODES`): two claims giving the same phone, payee account or address join their
claimants. One exception: the payee account of a claim paid to a provider (``payee_type`` is
``provider``) joins nobody, since a repairer's account is shared by all its customers.
:func:`joins` (one value) and :func:`joining` (a column) say this once.

The batch features build every group at once from these links (:func:`features.pit.linked_groups`).
The online path cannot read the whole history for a live claim, so it searches:
:func:`search_groups` expands the live claimants' identifiers breadth-first over the history rows
reported before ``t`` and collects every row the batch computation would use for their groups.
Where the rows live (a SQL table, arrays in memory) is the caller's business: it passes a ``find``
function that answers one step of the search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from features import catalog, columns

GROUP_NODES: tuple[str, ...] = ("claimant_id", *catalog.LINK_IDENTIFIERS)
"""What linked groups are made of: claimants and the identifiers that join them."""
ACCOUNT = "payee_account"
PAYEE_TYPE = "payee_type"
PROVIDER = "provider"
"""On a claim whose ``PAYEE_TYPE`` is ``PROVIDER``, the ``ACCOUNT`` joins nobody."""


def joins(col: str, value: object, payee_type: object) -> bool:
    """Whether ``value`` of the :data:`GROUP_NODES` column ``col``, on a claim paid to
    ``payee_type``, joins a linked group: it is known, and not a provider's payee account."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return False
    return not (col == ACCOUNT and payee_type == PROVIDER)


def joining(col: str, payee_type: np.ndarray) -> np.ndarray:
    """:func:`joins` for many claims, given their ``payee_type`` (an object array, ``None`` where
    missing): a boolean mask of the claims whose value of ``col``, where known, joins a group.
    (A missing value joins nothing either; callers already hold it as no node.)"""
    if col == ACCOUNT:
        return np.asarray(payee_type, dtype=object) != PROVIDER
    return np.ones(len(payee_type), dtype=bool)


def seeds(live: Mapping[str, np.ndarray]) -> dict[str, set]:
    """Where the live claims' groups start: per :data:`GROUP_NODES` column, the values that join
    on the live claims with a known claimant (a claim without one belongs to no group)."""
    missing = columns.missing(columns.length(live), object)
    start: dict[str, set] = {col: set() for col in GROUP_NODES}
    for rec in zip(*(live.get(c, missing) for c in (*GROUP_NODES, PAYEE_TYPE))):
        if rec[0] is None:
            continue
        for col, value in zip(GROUP_NODES, rec):
            if joins(col, value, rec[-1]):
                start[col].add(value)
    return start


class Found(NamedTuple):
    """History rows that one query of a search step found, column by column (one entry per row)."""

    claim_ids: list
    rows: list
    """What the caller holds of each row (the row itself, or where it is)."""
    reported_before: list
    """Whether each row was reported before ``t`` (with a claimant, it is then an edge of the graph)."""
    nodes: list[list]
    """Per :data:`GROUP_NODES` column, the rows' values."""
    payee_types: list


Find = Callable[[dict[str, set]], Iterable[Found]]
"""Given a frontier (per :data:`GROUP_NODES` column, the values to follow), the history rows
reached, as one or more :class:`Found` batches (fetched lazily: the search may stop early):

- by ``claimant_id``: rows reported before ``t`` or whose investigation closed before ``t`` (its
  claims' links, and the fraud decided in the group before ``t``);
- by another identifier: rows reported before ``t`` with a known claimant on which the value
  :func:`joins` (never a provider's account).

Rows may come back more than once, in one batch or across steps; live claims may be among them."""


def search_groups(start: dict[str, set], live_ids: set, find: Find, held: dict, max_rows: int) -> bool:
    """Add the rows of the live claimants' linked groups to ``held`` (claim id -> the caller's row;
    it may already hold rows, which count towards ``max_rows``), searching breadth-first from
    ``start`` (:func:`seeds`). The live claims' own rows are never added.

    A row reported before ``t`` with a claimant is an edge: its values that join are followed next.
    The search stops at ``max_rows`` rows held, returning False (the groups may be incomplete): when
    values are left to follow once ``held`` holds ``max_rows`` rows, or a new row would exceed them.
    """
    visited: dict[str, set] = {col: set() for col in GROUP_NODES}
    frontier = {col: set(start.get(col, ())) for col in GROUP_NODES}
    expanded: set = set()  # claim ids whose links have been followed
    while any(frontier.values()):
        if len(held) >= max_rows:
            return False
        for col in GROUP_NODES:
            visited[col] |= frontier[col]
        step, frontier = frontier, {col: set() for col in GROUP_NODES}
        for claim_ids, rows, reported_before, nodes, payee_types in find(step):
            claimants = nodes[0]
            for i, claim_id in enumerate(claim_ids):
                if claim_id in expanded or claim_id in live_ids:
                    continue
                if claim_id not in held:
                    if len(held) >= max_rows:
                        return False
                    held[claim_id] = rows[i]
                expanded.add(claim_id)
                if claimants[i] is None or not reported_before[i]:
                    continue  # not an edge of the graph before t
                for col, values in zip(GROUP_NODES, nodes):
                    value = values[i]
                    if value not in visited[col] and joins(col, value, payee_types[i]):
                        frontier[col].add(value)
    return True
