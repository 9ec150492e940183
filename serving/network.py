"""The linked network on the investigators' claim page: the claim, its claimant and identifiers, and
the other claims and claimants within a few hops, read from the service's in-memory history.

    claim_network(index, "C-1", now=datetime(2024, 6, 1))  # JSON-ready nodes and edges

What links claims: a claim is one hop from another when they share a claimant, or a phone, payee
account or address that joins claimants (:func:`features.links.joins`: the payee account of a claim
paid to a provider joins nobody, on either side). Providers never link claims: a repairer serves
hundreds of claimants, so expanding through one would fill the page with its customers. Provider
nodes are still shown, for the claims that name them, and so is a provider-paid account.

Which claims are shown: breadth-first from the claim, hop by hop up to ``hops``; within a hop the
most recent claims first (ties by claim id). At ``max_claims`` claims (the claim itself included)
the search stops and ``truncated`` is set; ``total_claims`` then counts the claims found up to the
hop where it stopped, a lower bound (``total_exact`` False) when hops beyond it were not searched.

Which other nodes are shown: every shown claim's claimant; the claim's own phone, payee account,
address and provider; any other identifier or provider when at least two shown claims name it (one
named by a single far claim links nothing on the page). Identifiers are keyed hashes in the history:
nodes are labelled with the first characters of the hash, never with anything else.

Confirmed fraud is highlighted as it was known at ``now``: ``fraud_confirmed`` with its
``investigation_closed_date`` at or before ``now``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from features import links
from features.columns import Columns
from features.errors import ClaimScoreError
from features.identity import is_hashed, personal_fields, short_hash
from features.store.index import HistoryIndex
from serving.ui.views import claim_path

PROVIDER = "provider_id"
ENTITIES: tuple[str, ...] = (*links.GROUP_NODES, PROVIDER)
"""What a claim's node points to: its claimant, the identifiers that link claimants, its provider."""
NODE_KINDS: dict[str, str] = {"claimant_id": "claimant", PROVIDER: "provider"}
"""A node's kind by column (the identifiers' kinds are their column names: phone, payee_account, address)."""
_READ = ("claim_id", "report_date", "claimed_amount", "fraud_confirmed", "investigation_closed_date", *ENTITIES)


class NotInHistory(ClaimScoreError):
    """The claim asked for is not in the history the service holds."""


def claim_network(
    index: HistoryIndex, claim_id: str, now: datetime | None = None, hops: int = 2, max_claims: int = 200
) -> dict[str, Any]:
    """The linked network of ``claim_id`` as JSON-ready data (see the module docstring):
    ``{"claim_id", "nodes", "edges", "truncated", "shown_claims", "total_claims", "total_exact"}``.

    Claim nodes carry ``claim_id``, ``report_date`` (ISO), ``claimed_amount`` (None if unknown),
    ``confirmed_fraud`` as of ``now`` (default: the current time, UTC), ``hop`` and ``href``; every
    node an ``id``, ``kind`` and ``label``. Edges go from each shown claim to its shown claimant,
    identifiers and provider: ``{"source", "target", "kind"}`` (the column). Raises
    :class:`NotInHistory` for a claim the index does not hold."""
    if hops < 0:
        raise ValueError(f"claim_network: hops must be 0 or more, got {hops}")
    if max_claims < 1:
        raise ValueError(f"claim_network: max_claims must be at least 1, got {max_claims}")
    centre = index.rows_with("claim_id", [claim_id])
    if not len(centre):
        raise NotInHistory(f"claim '{claim_id}' is not in the claim history")
    shown, truncated, total, exact = _search(index, centre, hops, max_claims)
    rows = np.array([r for hop in shown for r in hop], dtype=np.int64)
    claims = index.values_at(rows, _READ)
    hop_of = np.repeat(np.arange(len(shown)), [len(hop) for hop in shown])
    nodes, edges = _graph(claims, hop_of, _as_naive_utc(now))
    return {
        "claim_id": claim_id,
        "nodes": nodes,
        "edges": edges,
        "truncated": truncated,
        "shown_claims": len(rows),
        "total_claims": total,
        "total_exact": exact,
    }


def _search(index: HistoryIndex, centre: np.ndarray, hops: int, max_claims: int) -> tuple[list, bool, int, bool]:
    """Breadth-first from the claim: the rows shown per hop (nearest, then most recent first),
    whether the search stopped at ``max_claims``, the claims found and whether that is all of them."""
    shown: list[list[int]] = [centre.tolist()]
    seen = set(shown[0])
    visited: dict[str, set] = {col: set() for col in links.GROUP_NODES}
    frontier = centre
    found = 1
    for hop in range(1, hops + 1):
        reached = _neighbours(index, frontier, visited) if len(frontier) else frontier
        reached = reached[~np.isin(reached, list(seen))]
        if not len(reached):
            return shown, False, found, True
        found += len(reached)
        seen.update(reached.tolist())
        cols = index.values_at(reached, ("report_date", "claim_id"))
        report = cols["report_date"].astype(np.int64)
        recent_first = np.where(np.isnat(cols["report_date"]), np.iinfo(np.int64).max, -report)
        order = np.lexsort((cols["claim_id"].astype(str), recent_first))
        room = max_claims - sum(len(h) for h in shown)
        frontier = reached[order[:room]]
        shown.append(frontier.tolist())
        if len(reached) > room:
            return shown, True, found, hop == hops
    return shown, False, found, True


def _neighbours(index: HistoryIndex, rows: np.ndarray, visited: dict[str, set]) -> np.ndarray:
    """The claims sharing a joining value (:func:`features.links.joins`) with the claims at ``rows``,
    following only values not followed before (``visited`` is updated)."""
    claims = index.values_at(rows, (*links.GROUP_NODES, links.PAYEE_TYPE))
    found = []
    for col in links.GROUP_NODES:
        values = {v for v in claims[col][links.joining(col, claims[links.PAYEE_TYPE])].tolist() if v is not None}
        values -= visited[col]
        visited[col] |= values
        if not values:
            continue
        reached = index.rows_with(col, values)
        payee_type = index.values_at(reached, (links.PAYEE_TYPE,))[links.PAYEE_TYPE]
        found.append(reached[links.joining(col, payee_type)])
    return np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)


def _graph(claims: Columns, hop_of: np.ndarray, now: np.datetime64) -> tuple[list[dict], list[dict]]:
    """Nodes and edges of the shown claims (in shown order; the centre claim first)."""
    closed = claims["investigation_closed_date"]
    confirmed = (claims["fraud_confirmed"] == 1.0) & ~np.isnat(closed) & (closed <= now)
    report = np.datetime_as_string(claims["report_date"], unit="s")
    amounts = claims["claimed_amount"]
    # how many shown claims name each value: a value named once links nothing (unless the centre's)
    named: dict[tuple[str, Any], int] = {}
    for col in ENTITIES:
        for value in claims[col].tolist():
            if value is not None:
                named[col, value] = named.get((col, value), 0) + 1
    nodes: list[dict] = []
    edges: list[dict] = []
    entity_ids: dict[tuple[str, Any], str] = {}
    for i, claim_id in enumerate(claims["claim_id"].tolist()):
        node_id = f"claim:{claim_id}"
        amount = float(amounts[i])
        nodes.append(
            {
                "id": node_id,
                "kind": "claim",
                "label": claim_id,
                "claim_id": claim_id,
                "hop": int(hop_of[i]),
                "report_date": None if report[i] == "NaT" else str(report[i]),
                "claimed_amount": None if np.isnan(amount) else amount,
                "confirmed_fraud": bool(confirmed[i]),
                "href": claim_path(claim_id),
            }
        )
        for col in ENTITIES:
            value = claims[col][i]
            if value is None or (i > 0 and col != "claimant_id" and named[col, value] < 2):
                continue
            target = entity_ids.get((col, value))
            if target is None:
                target = entity_ids[col, value] = f"{NODE_KINDS.get(col, col)}:{value}"
                nodes.append({"id": target, "kind": NODE_KINDS.get(col, col), "label": _label(col, value)})
            edges.append({"source": node_id, "target": target, "kind": col})
    return nodes, edges


def _label(col: str, value: str) -> str:
    """A claimant's or provider's id as it is; a personal identifier's short hash (never anything else)."""
    if col not in personal_fields():
        return str(value)
    return short_hash(value) if is_hashed(value) else "not hashed"


def _as_naive_utc(now: datetime | None) -> np.datetime64:
    """``now`` (default: the current time) as the history's datetimes are held: naive UTC."""
    now = datetime.now(UTC) if now is None else now
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(now, "ns")
