"""Exact SHAP contributions for the project's LightGBM models, many times faster than TreeSHAP.

The values are LightGBM's own ``pred_contrib`` (= ``shap.TreeExplainer`` with
``feature_perturbation="tree_path_dependent"``) to ~1e-13, and contributions plus
:attr:`Explainer.expected_value` add up to the raw score (log-odds).

How (the idea of Linear TreeSHAP, Yu et al. 2022, with Gauss-Legendre quadrature). For a leaf ``l``
with value ``v`` whose path tests the distinct features ``F``, TreeSHAP gives feature ``i`` in ``F``::

    phi_i += v * (o_i - z_i) * integral_0^1 prod_{j in F, j != i} (t * o_j + (1 - t) * z_j) dt

where ``z_j`` is the share of training rows that pass the path's tests on ``j`` (a product of
``count(child) / count(parent)``) and ``o_j`` is 1 if the claim passes them, else 0. The integrand is
a polynomial of degree ``|F| - 1``, so ``M = ceil(D / 2)`` Gauss-Legendre nodes integrate it exactly
(``D`` = most distinct features on any path). Evaluated at those nodes the product becomes a vector
of ``M`` numbers per tree node: multiplied by one factor per edge on the way down, summed over the
children on the way back up, and each edge adds its feature's share (divided by its own factor,
whose reciprocal depends only on the tree, so it is precomputed). A claim costs ``O(nodes x M)``
multiply-adds per tree, in vector instructions, instead of TreeSHAP's ``O(leaves x depth^2)`` with
its recursion; the result is exact up to floating-point rounding (no approximation is involved).

Precomputed once per model (:meth:`Explainer.for_booster`, a few hundred ms), with ``M`` rounded up
to a multiple of 4 (``Mp``), ``S`` splits, ``2S + T`` nodes over ``T`` trees, ``R`` edges that
re-test a feature already tested above them, ``B`` such re-tests seen from the edge above::

    memory_bytes = (2S + T) * (8 * Mp + 48) + S * 56 + R * 16 * Mp + B * 8 + 4 * category_words

linear in the number of nodes (no ``2^depth`` term): about 130 bytes per node for trees of up to 16
distinct features per path, ~2 MB for 300 trees of 31 leaves. Bounded by ``max_memory_mb``; outside
the bounds (more than one output, linear trees, random-forest averaging, or over ``max_memory_mb``)
it falls back to ``booster.predict(pred_contrib=True)`` with a warning that names the bound.

Split semantics are LightGBM's (``include/LightGBM/tree.h``), read from ``booster.dump_model()``:
numeric ``x <= threshold`` goes left; NaN counts as 0 unless ``missing_type`` is ``NaN``; with
``missing_type`` ``Zero`` (|x| <= 1e-35) or ``NaN`` the missing value follows ``default_left``.
Categorical splits send the listed categories left (LightGBM's ``cat_threshold`` bitset); NaN,
negative and huge codes go right (x86-64 behaviour of LightGBM's cast to int); codes are truncated
to integers as LightGBM does.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numba import njit

log = logging.getLogger(__name__)

DEFAULT_MAX_MEMORY_MB = 256.0
"""Default bound on the precomputed arrays of one model."""
LANES = 4
"""Quadrature nodes are processed in groups of this many (one vector register)."""
ROW_KERNEL_MAX_ROWS = 8
"""Up to this many rows are explained one at a time (lowest latency); more go through the batch kernel."""
BLOCK_ROWS = 64
"""Rows explained together, tree by tree, by the batch kernel (vectorised across rows)."""
PARALLEL_MIN_ROWS = 1_000
"""Batches at least this large are split over threads (the kernels release the GIL)."""

_KIND_NONE, _KIND_ZERO, _KIND_NAN, _KIND_CAT = 0, 1, 2, 3
_MISSING_KIND = {"None": _KIND_NONE, "Zero": _KIND_ZERO, "NaN": _KIND_NAN}


class UnsupportedModel(ValueError):
    """The booster is outside what the fast explainer handles (the message names the bound)."""


@dataclass(frozen=True)
class _Model:
    """A booster flattened for the kernels. Per tree, nodes are numbered splits first (preorder), then
    leaves; "slot" is that number, offset by ``t_slot`` in the per-node arrays."""

    t_split: np.ndarray   # per tree: offset of its splits in the sp_* arrays
    t_nsplit: np.ndarray  # per tree: splits (leaves = splits + 1)
    t_slot: np.ndarray    # per tree: offset of its nodes in the nd_* arrays
    sp_feat: np.ndarray   # per split: feature column
    sp_thr: np.ndarray    # per split: numeric threshold
    sp_kind: np.ndarray   # per split: _KIND_*
    sp_dleft: np.ndarray  # per split: default_left
    sp_cat: np.ndarray    # per split: offset of its category bitset in cat_bits
    sp_ncat: np.ndarray   # per split: 32-bit words in that bitset
    sp_left: np.ndarray   # per split: slot of its left child
    sp_right: np.ndarray  # per split: slot of its right child
    cat_bits: np.ndarray
    nd_parent: np.ndarray  # per node: slot of its parent split (-1 for a root)
    nd_side: np.ndarray    # per node: 1 for a right child
    nd_feat: np.ndarray    # per node: the feature its parent split tests
    nd_z: np.ndarray       # per node: z of that feature on the path down to it
    nd_prev: np.ndarray    # per node: slot of the nearest edge above testing the same feature, or -1
    nd_rep: np.ndarray     # per node with a prev: its row in rep11 / rep10 / rep00, else -1
    nd_value: np.ndarray   # per leaf node: leaf output
    nd_block: np.ndarray   # per node: offset in ``block`` of the splits below it on the same feature
    block: np.ndarray      # (slots) the nearest splits below a node that test its feature again
    w_in: np.ndarray       # per node, per quadrature node: weight of its feature's share if the claim passes
    rep11: np.ndarray      # per re-test, per quadrature node: factor ratio, passes both tests
    rep10: np.ndarray      # ... passed the earlier test, fails this one
    rep00: np.ndarray      # ... failed the earlier test (a scalar ratio)
    t_nodes: np.ndarray    # quadrature nodes on [0, 1], shape (Mp,)
    one_minus_t: np.ndarray
    w_out: np.ndarray      # weight of a feature's share if the claim fails: w / (1 - t)
    max_slots: int

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f.name).nbytes for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray))

    def args(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self))


class Explainer:
    """Exact path-dependent SHAP values of a LightGBM booster (see the module docstring).

    Build once per model with :meth:`for_booster`; :meth:`contributions` may then be called from
    several threads at once.
    """

    def __init__(self, booster: Any, n_features: int, expected_value: float, model: _Model | None,
                 fallback_reason: str | None = None):
        self.booster = booster
        self.n_features = n_features
        self.expected_value = expected_value
        """Raw score (log-odds) of the average training row: contributions add up to raw score minus this."""
        self._model = model
        self.fallback_reason = fallback_reason
        """Why LightGBM's ``pred_contrib`` is used instead (``None``: the fast path is in use)."""

    @classmethod
    def for_booster(cls, booster: Any, max_memory_mb: float = DEFAULT_MAX_MEMORY_MB) -> "Explainer":
        """Precompute for ``booster`` within ``max_memory_mb`` (or fall back to ``pred_contrib``, with a warning)."""
        if not max_memory_mb > 0:
            raise ValueError(f"max_memory_mb must be positive, got {max_memory_mb}")
        dump = booster.dump_model()
        n_features = int(dump["max_feature_idx"]) + 1
        try:
            trees, expected = _parse(dump)
            model = _flatten(trees, int(max_memory_mb * 2**20))
        except UnsupportedModel as exc:
            log.warning("fast SHAP explainer not used, falling back to LightGBM pred_contrib: %s", exc)
            return cls(booster, n_features, _pred_contrib_bias(booster, n_features), None, str(exc))
        _compile(model, n_features)
        return cls(booster, n_features, expected, model)

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the precomputed arrays (0 on the fallback path)."""
        return 0 if self._model is None else self._model.nbytes

    @property
    def uses_fallback(self) -> bool:
        return self._model is None

    def contributions(self, matrix: np.ndarray, n_threads: int | None = None) -> np.ndarray:
        """SHAP values (log-odds), shape ``(rows, features)``, of an encoded float64 matrix.

        ``n_threads``: threads for large batches (default: every core available to the process).
        """
        x = np.asarray(matrix, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"matrix must have shape (rows, {self.n_features}), got {x.shape}")
        if self._model is None:
            return self.booster.predict(x, pred_contrib=True)[:, :-1]
        x = np.ascontiguousarray(x)
        out = np.zeros((len(x), self.n_features))
        args = self._model.args()
        if len(x) <= ROW_KERNEL_MAX_ROWS:
            _explain_rows(x, out, *args)
            return out
        threads = min(n_threads or _cores(), max(1, len(x) // (PARALLEL_MIN_ROWS // 2)))
        if threads <= 1:
            _explain_block(x, out, BLOCK_ROWS, *args)
            return out
        bounds = np.linspace(0, len(x), threads * 4 + 1).astype(int)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda ab: _explain_block(x[ab[0]:ab[1]], out[ab[0]:ab[1]], BLOCK_ROWS, *args),
                          zip(bounds[:-1], bounds[1:])))
        return out


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _pred_contrib_bias(booster: Any, n_features: int) -> float:
    return float(booster.predict(np.zeros((1, n_features)), pred_contrib=True)[0, -1])


# --- reading the model ------------------------------------------------------------------------------

@dataclass
class _Tree:
    splits: list[dict]  # preorder: feature, kind, threshold, default_left, cats, left/right slots
    nodes: list[dict]   # by slot (splits, then leaves): parent, side, feature, z, prev, zprev, value
    block: dict[int, list[int]]  # slot -> nearest splits below it testing its feature again
    depth: int          # most distinct features on a path


def _parse(dump: dict) -> tuple[list[_Tree], float]:
    if dump.get("num_tree_per_iteration", 1) != 1 or dump.get("num_class", 1) != 1:
        raise UnsupportedModel(f"num_class={dump.get('num_class')}: only single-output models (binary, "
                               "regression) are supported")
    if dump.get("average_output"):
        raise UnsupportedModel("random-forest boosting (average_output) is not supported")
    trees, expected = [], 0.0
    for info in dump["tree_info"]:
        root = info["tree_structure"]
        if "leaf_value" in root:  # a one-leaf tree is a constant: all of it is in the expected value
            expected += float(root["leaf_value"])
            continue
        tree, ev = _parse_tree(root)
        trees.append(tree)
        expected += ev
    return trees, expected


def _parse_tree(root: dict) -> tuple[_Tree, float]:
    """Splits in preorder, then every node's edge data; and the tree's expected value (LightGBM's
    ``ExpectedValue``: leaf outputs weighted by their share of the training rows)."""
    splits: list[dict] = []
    leaves: list[dict] = []
    block: dict[int, list[int]] = {}
    total = float(root["internal_count"])
    expected, depth = 0.0, 0
    # stack: node json, its edge record (None for the root), {feature: (edge record, z)} on its path
    stack: list[tuple[dict, dict | None, dict]] = [(root, None, {})]
    while stack:
        node, edge, path = stack.pop()
        if "leaf_value" in node:
            if node.get("leaf_coeff"):
                raise UnsupportedModel("linear trees (linear_tree=true) are not supported")
            value = float(node["leaf_value"])
            expected += (node["leaf_count"] / total) * value
            edge["value"] = value
            leaves.append(edge)
            depth = max(depth, len(path))
            continue
        feature = int(node["split_feature"])
        split = {"feature": feature, "default_left": bool(node.get("default_left", False)), "edge": edge}
        if node["decision_type"] == "==":
            split["kind"], split["threshold"] = _KIND_CAT, 0.0
            split["cats"] = [int(c) for c in str(node["threshold"]).split("||") if c != ""]
        elif node["decision_type"] == "<=":
            split["kind"] = _MISSING_KIND[node.get("missing_type", "None")]
            split["threshold"] = float(node["threshold"])
        else:
            raise UnsupportedModel(f"decision type {node['decision_type']!r} is not supported")
        index = len(splits)
        splits.append(split)
        if edge is not None:
            edge["split"] = index
        if feature in path:  # a re-test: the edge above that tested it last must not count this subtree
            block.setdefault(id(path[feature][0]), []).append(index)
        count = float(node["internal_count"])
        children = []
        for side, key in ((0, "left_child"), (1, "right_child")):
            child = node[key]
            ratio = float(child.get("internal_count", child.get("leaf_count"))) / count
            before = path.get(feature)
            z = ratio if before is None else ratio * before[1]  # LightGBM's order of the product
            rec = {"parent": index, "side": side, "feature": feature, "z": z,
                   "prev": before[0] if before else None, "zprev": before[1] if before else 1.0}
            children.append((child, rec, {**path, feature: (rec, z)}))
        stack.append(children[1])
        stack.append(children[0])  # left first: preorder
    n = len(splits)
    slot_of = {id(s["edge"]): k for k, s in enumerate(splits) if s["edge"] is not None}
    slot_of.update({id(leaf): n + j for j, leaf in enumerate(leaves)})
    for split in splits:
        split["left"] = split["right"] = -1
    nodes: list[dict] = [{"parent": -1, "side": 0, "feature": -1, "z": 1.0, "prev": -1, "zprev": 1.0,
                          "value": 0.0}] + [None] * (2 * n)
    for rec in [s["edge"] for s in splits if s["edge"] is not None] + leaves:
        slot = slot_of[id(rec)]
        splits[rec["parent"]]["right" if rec["side"] else "left"] = slot
        nodes[slot] = {**rec, "prev": slot_of[id(rec["prev"])] if rec["prev"] is not None else -1,
                       "value": rec.get("value", 0.0)}
    blocks = {slot_of[key]: below for key, below in block.items()}
    return _Tree(splits, nodes, blocks, depth), expected


def _quadrature(depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1], exact for polynomials of degree < 2 * count,
    with count = ceil(depth / 2) rounded up to whole vector lanes."""
    count = LANES * max(1, math.ceil(math.ceil(depth / 2) / LANES))
    x, w = np.polynomial.legendre.leggauss(count)
    return (x + 1.0) / 2.0, w / 2.0


def _flatten(trees: list[_Tree], budget: int) -> _Model:
    depth = max((t.depth for t in trees), default=1)
    t_nodes, weights = _quadrature(depth)
    mp = len(t_nodes)
    n_splits = sum(len(t.splits) for t in trees)
    n_slots = 2 * n_splits + len(trees)
    n_rep = sum(1 for t in trees for nd in t.nodes if nd["prev"] >= 0)
    n_block = sum(len(b) for t in trees for b in t.block.values())
    cat_words = sum(max(s["cats"], default=-1) // 32 + 1 for t in trees for s in t.splits if s["kind"] == _KIND_CAT)
    need = n_slots * (8 * mp + 48) + n_splits * 56 + n_rep * 16 * mp + n_block * 8 + 4 * cat_words
    if need > budget:
        raise UnsupportedModel(f"its arrays would take {need / 2**20:.1f} MB, over max_memory_mb="
                               f"{budget / 2**20:g} ({n_slots:,} nodes, {mp} quadrature nodes for paths "
                               f"of up to {depth} features)")

    i64 = lambda n, fill=0: np.full(n, fill, np.int64)  # noqa: E731
    t_split, t_nsplit, t_slot = i64(len(trees)), i64(len(trees)), i64(len(trees))
    sp_feat, sp_thr, sp_kind = i64(n_splits), np.zeros(n_splits), np.zeros(n_splits, np.int8)
    sp_dleft, sp_cat, sp_ncat = np.zeros(n_splits, np.bool_), i64(n_splits), i64(n_splits)
    sp_left, sp_right = i64(n_splits), i64(n_splits)
    nd_parent, nd_side, nd_feat, nd_prev, nd_rep = i64(n_slots, -1), i64(n_slots), i64(n_slots, -1), \
        i64(n_slots, -1), i64(n_slots, -1)
    nd_z, nd_zprev, nd_value = np.ones(n_slots), np.ones(n_slots), np.zeros(n_slots)
    nd_block = i64(n_slots + 1)
    block, cat_bits = [], []
    si = so = 0
    for t, tree in enumerate(trees):
        t_split[t], t_nsplit[t], t_slot[t] = si, len(tree.splits), so
        for s in tree.splits:
            sp_feat[si], sp_thr[si], sp_kind[si], sp_dleft[si] = s["feature"], s["threshold"], s["kind"], s["default_left"]
            sp_left[si], sp_right[si] = s["left"], s["right"]
            if s["kind"] == _KIND_CAT:
                words = [0] * (max(s["cats"], default=-1) // 32 + 1)
                for c in s["cats"]:
                    words[c // 32] |= 1 << (c % 32)
                sp_cat[si], sp_ncat[si] = len(cat_bits), len(words)
                cat_bits += words
            si += 1
        for slot, nd in enumerate(tree.nodes):
            g = so + slot
            nd_parent[g], nd_side[g], nd_feat[g], nd_prev[g] = nd["parent"], nd["side"], nd["feature"], nd["prev"]
            nd_z[g], nd_zprev[g], nd_value[g] = nd["z"], nd["zprev"], nd["value"]
            nd_block[g] = len(block)
            block += tree.block.get(slot, [])
        so += len(tree.nodes)
    nd_block[n_slots] = len(block)
    rows = np.flatnonzero(nd_prev >= 0)
    nd_rep[rows] = np.arange(len(rows))
    one_minus_t = 1.0 - t_nodes
    passed = t_nodes[None, :] + one_minus_t[None, :] * nd_z[:, None]     # t + (1 - t) z
    w_in = (1.0 - nd_z)[:, None] * weights[None, :] / passed
    prev_passed = t_nodes[None, :] + one_minus_t[None, :] * nd_zprev[rows, None]
    rep11 = passed[rows] / prev_passed
    rep10 = one_minus_t[None, :] * nd_z[rows, None] / prev_passed
    with np.errstate(divide="ignore", invalid="ignore"):
        rep00 = np.where(nd_zprev[rows] > 0, nd_z[rows] / nd_zprev[rows], 0.0)
    return _Model(t_split, t_nsplit, t_slot, sp_feat, sp_thr, sp_kind, sp_dleft, sp_cat, sp_ncat, sp_left,
                  sp_right, np.array(cat_bits, dtype=np.uint32), nd_parent, nd_side, nd_feat, nd_z, nd_prev,
                  nd_rep, nd_value, nd_block, np.array(block, dtype=np.int64), np.ascontiguousarray(w_in),
                  np.ascontiguousarray(rep11), np.ascontiguousarray(rep10), rep00, t_nodes, one_minus_t,
                  weights / one_minus_t, int(2 * t_nsplit.max() + 1) if len(trees) else 1)


# --- kernels ------------------------------------------------------------------------------------------

_COMPILE_LOCK = threading.Lock()


def _compile(model: _Model, n_features: int) -> None:
    """Compile (or load from numba's disk cache) both kernels for this model's array types.

    The one-row kernel works on small fixed groups of quadrature nodes, which LLVM vectorises only
    with its SLP vectoriser; numba leaves that off by default (``NUMBA_SLP_VECTORIZE``), so it is
    switched on while this kernel compiles. Without it the results are the same, only slower."""
    from numba.core import config

    x, out = np.zeros((1, n_features)), np.zeros((1, n_features))
    with _COMPILE_LOCK:
        if not _explain_rows.signatures:
            old = config.SLP_VECTORIZE
            config.SLP_VECTORIZE = 1
            try:
                _explain_rows(x[:0], out[:0], *model.args())
            finally:
                config.SLP_VECTORIZE = old
        _explain_block(x[:0], out[:0], BLOCK_ROWS, *model.args())


@njit(inline="always")
def _goes_right(fval, kind, threshold, default_left, cat_off, cat_len, cat_bits):
    if kind == 3:  # categorical: listed codes go left; NaN, negative, huge and unlisted codes go right
        if np.isnan(fval) or fval <= -1.0 or fval >= 2147483648.0:
            return True
        code = int(fval)
        word = code >> 5
        if word >= cat_len:
            return True
        return ((cat_bits[cat_off + word] >> np.uint32(code & 31)) & np.uint32(1)) == 0
    if np.isnan(fval):
        if kind == 2:
            return not default_left
        fval = 0.0
    if kind == 1 and -1.0000000180025095e-35 <= fval <= 1.0000000180025095e-35:
        return not default_left
    return not fval <= threshold


@njit(cache=True, nogil=True)
def _explain_rows(x, out, t_split, t_nsplit, t_slot, sp_feat, sp_thr, sp_kind, sp_dleft, sp_cat, sp_ncat,
                  sp_left, sp_right, cat_bits, nd_parent, nd_side, nd_feat, nd_z, nd_prev, nd_rep, nd_value,
                  nd_block, block, w_in, rep11, rep10, rep00, t_nodes, one_minus_t, w_out, max_slots):
    """Add each row's SHAP values to ``out``, one row at a time (quadrature nodes in vector lanes).

    Per tree: every split's direction; top down, each node's product vector ``q`` (and whether the
    claim passes every test of the node's feature so far); leaves times their value; bottom up, sums
    over children; then each edge adds its feature's share, less the parts below re-tests."""
    groups = t_nodes.shape[0] // LANES
    nf = out.shape[1]
    right = np.empty(max_slots, np.int64)
    passes = np.empty(max_slots, np.int64)
    q = np.empty((max_slots, groups * LANES))
    acc = np.empty((nf, groups * LANES))
    for r in range(x.shape[0]):
        acc[:, :] = 0.0
        for t in range(len(t_split)):
            s0 = t_split[t]
            ns = t_nsplit[t]
            g0 = t_slot[t]
            for k in range(ns):
                g = s0 + k
                right[k] = _goes_right(x[r, sp_feat[g]], sp_kind[g], sp_thr[g], sp_dleft[g], sp_cat[g], sp_ncat[g],
                                       cat_bits)
            for m in range(groups * LANES):
                q[0, m] = 1.0
            for sl in range(1, 2 * ns + 1):
                g = g0 + sl
                p = nd_parent[g]
                hot = 1 if right[p] == nd_side[g] else 0
                prev = nd_prev[g]
                if prev < 0:
                    passes[sl] = hot
                    h = np.float64(hot)
                    z = nd_z[g]
                    for c in range(groups):
                        for m in range(c * LANES, c * LANES + LANES):
                            q[sl, m] = q[p, m] * (t_nodes[m] * h + one_minus_t[m] * z)
                else:
                    before = passes[prev]
                    passes[sl] = hot * before
                    i = nd_rep[g]
                    if hot * before:
                        for c in range(groups):
                            for m in range(c * LANES, c * LANES + LANES):
                                q[sl, m] = q[p, m] * rep11[i, m]
                    elif before:
                        for c in range(groups):
                            for m in range(c * LANES, c * LANES + LANES):
                                q[sl, m] = q[p, m] * rep10[i, m]
                    else:
                        ratio = rep00[i]
                        for c in range(groups):
                            for m in range(c * LANES, c * LANES + LANES):
                                q[sl, m] = q[p, m] * ratio
            for sl in range(ns, 2 * ns + 1):
                v = nd_value[g0 + sl]
                for c in range(groups):
                    for m in range(c * LANES, c * LANES + LANES):
                        q[sl, m] = q[sl, m] * v
            for k in range(ns - 1, -1, -1):
                a = sp_left[s0 + k]
                b = sp_right[s0 + k]
                for c in range(groups):
                    for m in range(c * LANES, c * LANES + LANES):
                        q[k, m] = q[a, m] + q[b, m]
            for sl in range(1, 2 * ns + 1):
                g = g0 + sl
                f = nd_feat[g]
                for j in range(nd_block[g], nd_block[g + 1]):  # leaves below a re-test count there
                    u = block[j]
                    for c in range(groups):
                        for m in range(c * LANES, c * LANES + LANES):
                            q[sl, m] -= q[u, m]
                if passes[sl]:
                    for c in range(groups):
                        for m in range(c * LANES, c * LANES + LANES):
                            acc[f, m] += w_in[g, m] * q[sl, m]
                else:
                    for c in range(groups):
                        for m in range(c * LANES, c * LANES + LANES):
                            acc[f, m] -= w_out[m] * q[sl, m]
        for f in range(nf):
            s = 0.0
            for m in range(groups * LANES):
                s += acc[f, m]
            out[r, f] += s


@njit(cache=True, nogil=True)
def _explain_block(x, out, block_rows, t_split, t_nsplit, t_slot, sp_feat, sp_thr, sp_kind, sp_dleft, sp_cat,
                   sp_ncat, sp_left, sp_right, cat_bits, nd_parent, nd_side, nd_feat, nd_z, nd_prev, nd_rep,
                   nd_value, nd_block, block, w_in, rep11, rep10, rep00, t_nodes, one_minus_t, w_out, max_slots):
    """The same computation as :func:`_explain_rows` for blocks of rows, tree by tree, with the rows
    in the innermost loops (vectorised across rows; a tree's arrays stay in cache for the block)."""
    n, nf = x.shape
    mq = t_nodes.shape[0]
    xt = np.empty((nf, block_rows))
    acc = np.empty((nf, mq, block_rows))
    right = np.empty((max_slots, block_rows))
    passes = np.empty((max_slots, block_rows))
    q = np.empty((max_slots, mq, block_rows))
    for start in range(0, n, block_rows):
        nb = min(block_rows, n - start)
        for f in range(nf):
            for r in range(nb):
                xt[f, r] = x[start + r, f]
        acc[:, :, :] = 0.0
        for t in range(len(t_split)):
            s0 = t_split[t]
            ns = t_nsplit[t]
            g0 = t_slot[t]
            for k in range(ns):
                g = s0 + k
                kind = sp_kind[g]
                fi = sp_feat[g]
                thr = sp_thr[g]
                if kind == 0:
                    for r in range(nb):
                        v = xt[fi, r]
                        v = 0.0 if np.isnan(v) else v
                        right[k, r] = 0.0 if v <= thr else 1.0
                else:
                    for r in range(nb):
                        right[k, r] = 1.0 if _goes_right(xt[fi, r], kind, thr, sp_dleft[g], sp_cat[g], sp_ncat[g],
                                                         cat_bits) else 0.0
            for m in range(mq):
                for r in range(nb):
                    q[0, m, r] = 1.0
            for sl in range(1, 2 * ns + 1):
                g = g0 + sl
                p = nd_parent[g]
                side = np.float64(nd_side[g])
                prev = nd_prev[g]
                if prev < 0:
                    for r in range(nb):
                        passes[sl, r] = 1.0 - abs(right[p, r] - side)
                    z = nd_z[g]
                    for m in range(mq):
                        a = t_nodes[m]
                        b = one_minus_t[m] * z
                        for r in range(nb):
                            q[sl, m, r] = q[p, m, r] * (a * passes[sl, r] + b)
                else:
                    for r in range(nb):
                        passes[sl, r] = (1.0 - abs(right[p, r] - side)) * passes[prev, r]
                    i = nd_rep[g]
                    ratio = rep00[i]
                    for m in range(mq):
                        both = rep11[i, m]
                        first = rep10[i, m]
                        for r in range(nb):
                            factor = both if passes[sl, r] > 0.5 else (first if passes[prev, r] > 0.5 else ratio)
                            q[sl, m, r] = q[p, m, r] * factor
            for sl in range(ns, 2 * ns + 1):
                v = nd_value[g0 + sl]
                for m in range(mq):
                    for r in range(nb):
                        q[sl, m, r] = q[sl, m, r] * v
            for k in range(ns - 1, -1, -1):
                a_ = sp_left[s0 + k]
                b_ = sp_right[s0 + k]
                for m in range(mq):
                    for r in range(nb):
                        q[k, m, r] = q[a_, m, r] + q[b_, m, r]
            for sl in range(1, 2 * ns + 1):
                g = g0 + sl
                f = nd_feat[g]
                for j in range(nd_block[g], nd_block[g + 1]):
                    u = block[j]
                    for m in range(mq):
                        for r in range(nb):
                            q[sl, m, r] -= q[u, m, r]
                for m in range(mq):
                    wi = w_in[g, m]
                    wo = -w_out[m]
                    for r in range(nb):
                        acc[f, m, r] += (wi if passes[sl, r] > 0.5 else wo) * q[sl, m, r]
        for f in range(nf):
            for m in range(mq):
                for r in range(nb):
                    out[start + r, f] += acc[f, m, r]
