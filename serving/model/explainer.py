"""Exact SHAP contributions for the project's LightGBM models, much faster than TreeSHAP.

The values are LightGBM's own ``pred_contrib`` (= ``shap.TreeExplainer`` with
``feature_perturbation="tree_path_dependent"``) to floating-point rounding, and contributions plus
:attr:`Explainer.expected_value` add up to the raw score (log-odds).

How (the idea of Linear TreeSHAP, Yu et al. 2022, with Gauss-Legendre quadrature). For a leaf with
value ``v`` whose path tests the distinct features ``F``, TreeSHAP gives each feature ``i`` in ``F``::

    phi_i += v * (o_i - z_i) * integral_0^1 prod_{j in F, j != i} (t * o_j + (1 - t) * z_j) dt

where ``z_j`` is the share of training rows that pass the path's tests on ``j`` (a product of
``count(child) / count(parent)``) and ``o_j`` is 1 if the claim passes them, else 0. The integrand is
a polynomial of degree ``|F| - 1``, so ``M = ceil(D / 2)`` Gauss-Legendre nodes integrate it exactly,
``D`` being the most distinct features on any path of the tree. Evaluated at those nodes, a tree is
walked once down (each node's vector of path products = its parent's times one factor) and once up
(sums over children); each edge then adds its feature's share: the sum below it divided by the
edge's own factor, whose reciprocal depends only on the tree (precomputed). Leaves below a re-test
of the same feature count at the re-test. A claim costs ``O(nodes x M)`` multiply-adds per tree
instead of TreeSHAP's ``O(leaves x depth^2)`` recursion, and nothing is approximated: the results
differ from LightGBM's only by floating-point rounding.

Two kernels: one claim at a time (a model of ``SPLIT_MIN_TREES`` trees or more is split by trees over
two of numba's OpenMP threads, which spin for a moment after their work, so the hand-off is cheap),
and blocks of claims with the claims in the innermost loops, which the compiler vectorises (batch
scoring; large batches are split by rows over every core). Measured by ``python -m bench.run explain``
(bench/RESULTS.md).

Memory, precomputed once per model by :meth:`Explainer.for_booster`: with ``T`` trees,
``S`` splits, ``N = 2S + T`` nodes, ``L_t`` = ``ceil(D_t / 2)`` rounded up to a multiple of 4 (4 for
trees with at most 8 distinct features per path), ``B`` re-tests of a feature listed under the
edge above them and ``W`` 32-bit words of category sets::

    memory_bytes ~= sum_t N_t * (40 + 24 * L_t) + 40 * S + 72 * T + 40 * B + 4 * W

(plus a few hundred bytes of quadrature tables): linear in the number of nodes, no ``2^depth``
term (the benchmark reports it per model). Bounded by ``max_memory_mb``; outside the bounds (more
than one output, linear trees, random-forest averaging, or larger than ``max_memory_mb``) it falls
back to ``booster.predict(pred_contrib=True)``, with a warning that names the bound.

Split semantics are LightGBM's (``include/LightGBM/tree.h``), read from ``booster.dump_model()``:
LightGBM's predictor first reads any |x| <= 1e-35 as 0; numeric ``x <= threshold`` goes left (the
thresholds come from the model text, which keeps infinite ones); NaN counts as 0 unless
``missing_type`` is ``NaN``; with ``missing_type`` ``Zero`` (x = 0) or ``NaN`` (x = NaN) the missing
value follows ``default_left``.
Categorical splits send the listed categories (LightGBM's ``cat_threshold`` bitset) left; NaN,
negative and huge codes go right (the x86-64 behaviour of LightGBM's cast to int); codes are
truncated to integers as LightGBM does. :meth:`Explainer.leaf_indices` checks all of it against
``booster.predict(pred_leaf=True)``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from serving.model.kernels import (
    F_C,
    F_FAIL,
    F_PASS,
    F_QWOUT,
    F_THR,
    F_WIN,
    LANES,
    S_CAT,
    S_DLEFT,
    S_FEAT,
    S_KIND,
    S_LEFT,
    S_NCAT,
    S_PREV,
    S_RIGHT,
    SPLIT_WIDTH,
    T_LANES,
    T_M,
    T_NSPLIT,
    T_Q,
    T_RETEST,
    T_SLOT,
    T_SPLIT,
    T_W,
    TREE_WIDTH,
    explain_block,
    explain_block_rows,
    explain_rows,
    explain_rows_split,
    route,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_MEMORY_MB = 256.0
"""Default bound on the precomputed arrays of one model."""
ROW_KERNEL_MAX_ROWS = 2
"""Up to this many rows are explained one at a time (lowest latency); more go through the batch kernel."""
SPLIT_MIN_TREES = 64
"""A single claim is split over two threads by trees from this many trees (below, the hand-off costs more)."""
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
    """A booster flattened for the kernels (the layout is described in :mod:`serving.model.kernels`)."""

    tree: np.ndarray  # per tree and one more, a row (serving.model.kernels.T_*): offsets of its splits,
    # nodes, vectors, quadrature nodes and re-tests; its splits and quadrature nodes
    split: np.ndarray  # per split, a row (serving.model.kernels.S_*, int32): feature, child slots, kind,
    # default_left, its category bitset in cat_bits
    fl: np.ndarray  # sp_thr, nd_c, q_wout, f_pass, f_fail, w_in one after the other (these are views of it)
    sp_thr: np.ndarray  # per split: numeric threshold
    cat_bits: np.ndarray
    nd_feat: np.ndarray  # per node: the feature its parent split tests
    nd_prev: np.ndarray  # per node: slot of the nearest edge above testing the same feature (0, the root: none)
    nd_c: np.ndarray  # per node: its factor when an earlier test of the feature failed (times a leaf's value)
    nd_block: np.ndarray  # per node: offset in ``block`` of the splits below it re-testing its feature
    block: np.ndarray  # slots: the nearest splits below a node that test its feature again
    retest: np.ndarray  # per re-test, by tree: slot of the edge above testing the feature last, the offset
    # of that edge's vector in w_in, slot of the re-testing split, the feature
    f_pass: np.ndarray  # per node and quadrature node: factor when the claim passes (times a leaf's value)
    f_fail: np.ndarray  # ... when it fails this test, having passed the earlier ones
    w_in: np.ndarray  # ... weight of the node's share when the claim passes every test of the feature
    q_wout: np.ndarray  # per quadrature node: weight of a share when the claim fails, w / (1 - t)
    max_slots: int
    max_lanes: int
    t_index: np.ndarray  # per tree: its index in the booster (one-leaf trees are left out above)
    nd_leaf: np.ndarray  # per leaf node: LightGBM's leaf index (-1 for splits)

    @property
    def nbytes(self) -> int:
        """Bytes held (the float arrays are views of ``fl``: counted once)."""
        return sum(
            a.nbytes
            for a in (getattr(self, f.name) for f in fields(self))
            if isinstance(a, np.ndarray) and a.base is not self.fl
        )

    def column(self, col: int) -> np.ndarray:
        """One column of the trees' rows (``serving.model.kernels.T_*``), one value per tree."""
        return self.tree.reshape(-1, TREE_WIDTH)[:-1, col]

    @property
    def n_trees(self) -> int:
        return len(self.tree) // TREE_WIDTH - 1

    def args(self) -> tuple:
        """The block kernels' arguments (:func:`explain_block` less its block size)."""
        return tuple(getattr(self, n) for n in _BLOCK_ARGS)

    def row_args(self) -> tuple:
        """:func:`explain_rows`' arguments after its range of trees."""
        return tuple(getattr(self, n) for n in _ROW_ARGS)


_BLOCK_ARGS = (
    "tree",
    "split",
    "sp_thr",
    "cat_bits",
    "nd_feat",
    "nd_prev",
    "nd_c",
    "nd_block",
    "block",
    "f_pass",
    "f_fail",
    "w_in",
    "q_wout",
    "max_slots",
    "max_lanes",
)
_ROW_ARGS = ("tree", "split", "fl", "cat_bits", "retest", "max_slots", "max_lanes")


class Explainer:
    """Exact path-dependent SHAP values of a LightGBM booster (see the module docstring).

    Build once per model with :meth:`for_booster`; :meth:`contributions` may then be called from
    several threads at once.
    """

    def __init__(
        self,
        booster: Any,
        n_features: int,
        expected_value: float,
        model: _Model | None,
        fallback_reason: str | None = None,
        n_trees: int = 0,
    ):
        self.booster = booster
        self.n_features = n_features
        self.n_trees = n_trees
        self.expected_value = expected_value
        """Raw score (log-odds) of the average training row: contributions add up to raw score minus this."""
        self._model = model
        self._args = model.args() if model is not None else ()
        self._row_args = model.row_args() if model is not None else ()
        self._n_trees = model.n_trees if model is not None else 0
        self.fallback_reason = fallback_reason
        """Why LightGBM's ``pred_contrib`` is used instead (``None``: the fast path is in use)."""

    @classmethod
    def for_booster(cls, booster: Any, max_memory_mb: float = DEFAULT_MAX_MEMORY_MB) -> Explainer:
        """Precompute for ``booster`` within ``max_memory_mb`` (or fall back to ``pred_contrib``, with a warning)."""
        if not max_memory_mb > 0:
            raise ValueError(f"max_memory_mb must be positive, got {max_memory_mb}")
        dump = booster.dump_model()
        n_features, n_trees = int(dump["max_feature_idx"]) + 1, len(dump["tree_info"])
        try:
            trees, expected = _parse(dump, _thresholds(booster.model_to_string()))
            model = _flatten(trees, max_memory_mb)
        except UnsupportedModel as exc:
            log.warning("fast SHAP explainer not used, falling back to LightGBM pred_contrib: %s", exc)
            return cls(booster, n_features, _pred_contrib_bias(booster, n_features), None, str(exc), n_trees)
        _warm_up(model, n_features)
        return cls(booster, n_features, expected, model, None, n_trees)

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the precomputed arrays (0 on the fallback path)."""
        return 0 if self._model is None else self._model.nbytes

    @property
    def uses_fallback(self) -> bool:
        return self._model is None

    def contributions(self, matrix: np.ndarray, n_threads: int | None = None, stable: bool = False) -> np.ndarray:
        """SHAP values (log-odds), shape ``(rows, features)``, of an encoded float64 matrix.

        ``n_threads``: threads to use (default: every core available to the process). A claim or two
        is split by trees over two threads (for models of at least ``SPLIT_MIN_TREES`` trees); larger
        batches by rows.

        ``stable``: every row's values are the same to the last bit whatever other rows come with it
        (the block kernel for every size; the one-claim kernel sums in another order and differs in
        the last bits). The service asks for this, so a claim's reasons never depend on which other claims
        it happened to be scored with.
        """
        x = np.asarray(matrix, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"matrix must have shape (rows, {self.n_features}), got {x.shape}")
        if self._model is None:
            from serving.model.bundle import PREDICT_LOCK

            with PREDICT_LOCK:
                return self.booster.predict(x, pred_contrib=True)[:, :-1]
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        out = np.zeros((len(x), self.n_features))
        threads = n_threads or _CORES
        if len(x) <= ROW_KERNEL_MAX_ROWS and not stable:  # one claim: the kernel is quick, keep this path short
            trees = self._n_trees
            if threads < 2 or trees < SPLIT_MIN_TREES:
                explain_rows(x, out, 0, trees, *self._row_args)
            elif _split_on_numba_threads():
                explain_rows_split(x, out, np.zeros_like(out), trees // 2, *self._row_args)
            else:  # numba's workqueue threads wake too slowly for a claim: a thread of ours takes half
                other = np.zeros_like(out)
                done = _pool().submit(explain_rows, x, other, trees // 2, trees, *self._row_args)
                explain_rows(x, out, 0, trees // 2, *self._row_args)
                done.result()
                out += other
            return out
        threads = min(threads, max(1, len(x) // (PARALLEL_MIN_ROWS // 2)))
        args = self._args
        if len(x) <= ROW_KERNEL_MAX_ROWS:  # stable, a claim or two: the block kernel's sums, row by row
            explain_block_rows(x, out, *args)
            return out
        if threads <= 1:
            explain_block(x, out, BLOCK_ROWS, *args)
            return out
        bounds = np.linspace(0, len(x), threads * 4 + 1).astype(int)
        parts = [
            _pool().submit(explain_block, x[a:b], out[a:b], BLOCK_ROWS, *args) for a, b in zip(bounds[:-1], bounds[1:])
        ]
        for part in parts:
            part.result()
        return out

    def leaf_indices(self, matrix: np.ndarray) -> np.ndarray:
        """The leaf each row reaches in each tree, numbered as ``booster.predict(pred_leaf=True)`` does:
        the explainer's reading of the splits, to check against LightGBM's."""
        if self._model is None:
            from serving.model.bundle import PREDICT_LOCK

            with PREDICT_LOCK:
                return self.booster.predict(np.asarray(matrix, dtype=np.float64), pred_leaf=True)
        x = np.ascontiguousarray(np.asarray(matrix, dtype=np.float64))
        out = np.zeros((len(x), self.n_trees), dtype=np.int64)
        m = self._model
        route(x, out, m.tree, m.split, m.sp_thr, m.cat_bits, m.t_index, m.nd_leaf)
        return out


_POOL: list[ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One pool of worker threads per process, for every explainer (the kernels release the GIL)."""
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(max(2, _CORES), thread_name_prefix="explain"))
        return _POOL[0]


@functools.cache
def _split_on_numba_threads() -> bool:
    """Whether numba runs its parallel loops on OpenMP (or TBB) threads, which wait spinning for a moment
    after their work and take the next claim's half at once; its own workqueue threads (no OpenMP
    runtime found) sleep and wake too slowly for the split to pay."""
    import numba

    try:
        return numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel loop has run yet (the explainers' warm-up runs one)
        return False


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_CORES = _cores()
"""Cores this process may use (read once)."""


def _warm_up(model: _Model, n_features: int) -> None:
    """Compile both kernels (or load them from numba's disk cache) now rather than on the first claim."""
    x, out = np.zeros((0, n_features)), np.zeros((0, n_features))
    explain_rows(x, out, 0, 0, *model.row_args())
    explain_rows_split(x, out, out, 0, *model.row_args())
    explain_block(x, out, BLOCK_ROWS, *model.args())
    explain_block_rows(x, out, *model.args())


def _pred_contrib_bias(booster: Any, n_features: int) -> float:
    from serving.model.bundle import PREDICT_LOCK

    with PREDICT_LOCK:
        return float(booster.predict(np.zeros((1, n_features)), pred_contrib=True)[0, -1])


# --- reading the model ------------------------------------------------------------------------------


@dataclass
class _Tree:
    splits: list[dict]  # preorder: feature, kind, threshold, default_left, cats, left/right slots
    nodes: list[dict]  # by slot (splits, then leaves): parent, side, feature, z, prev, zprev, value, leaf
    block: dict[int, list[int]]  # slot -> nearest splits below it testing its feature again
    depth: int  # most distinct features on a path
    index: int = 0  # position in the booster


def _thresholds(model_text: str) -> list[list[float]]:
    """Each tree's split thresholds from the model text, by split index. ``dump_model`` writes an
    infinite threshold as +-1e300 (LightGBM's AvoidInf); the text keeps ``inf``, so x = inf splits
    as LightGBM splits it."""
    out = []
    for line in model_text.splitlines():
        if line.startswith("Tree="):
            out.append([])
        elif line.startswith("threshold=") and out:
            out[-1] = [float(v) for v in line[len("threshold=") :].split()]
        elif line.startswith("end of trees"):
            break
    return out


def _parse(dump: dict, thresholds: list[list[float]]) -> tuple[list[_Tree], float]:
    if dump.get("num_tree_per_iteration", 1) != 1 or dump.get("num_class", 1) != 1:
        raise UnsupportedModel(
            f"num_class={dump.get('num_class')}: only single-output models (binary, regression) are supported"
        )
    if dump.get("average_output"):
        raise UnsupportedModel("random-forest boosting (average_output) is not supported")
    trees, expected = [], 0.0
    for index, info in enumerate(dump["tree_info"]):
        root = info["tree_structure"]
        if "leaf_value" in root:  # a one-leaf tree is a constant: all of it is in the expected value
            expected += float(root["leaf_value"])
            continue
        tree, ev = _parse_tree(root, thresholds[index])
        tree.index = index
        trees.append(tree)
        expected += ev
    return trees, expected


def _parse_tree(root: dict, thresholds: list[float]) -> tuple[_Tree, float]:
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
            edge["value"], edge["leaf"] = value, int(node["leaf_index"])
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
            split["threshold"] = thresholds[node["split_index"]]
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
            rec = {
                "parent": index,
                "side": side,
                "feature": feature,
                "z": z,
                "prev": before[0] if before else None,
                "zprev": before[1] if before else 1.0,
            }
            children.append((child, rec, {**path, feature: (rec, z)}))
        stack.append(children[1])
        stack.append(children[0])  # left first: preorder
    n = len(splits)
    slot_of = {id(s["edge"]): k for k, s in enumerate(splits) if s["edge"] is not None}
    slot_of.update({id(leaf): n + j for j, leaf in enumerate(leaves)})
    for split in splits:
        split["left"] = split["right"] = -1
    nodes: list[dict] = [
        {"parent": -1, "side": 0, "feature": -1, "z": 1.0, "prev": -1, "zprev": 1.0, "value": 0.0, "leaf": -1}
    ] + [None] * (2 * n)
    for rec in [s["edge"] for s in splits if s["edge"] is not None] + leaves:
        slot = slot_of[id(rec)]
        splits[rec["parent"]]["right" if rec["side"] else "left"] = slot
        nodes[slot] = {
            **rec,
            "prev": slot_of[id(rec["prev"])] if rec["prev"] is not None else -1,
            "value": rec.get("value", 0.0),
            "leaf": rec.get("leaf", -1),
        }
    blocks = {slot_of[key]: below for key, below in block.items()}
    return _Tree(splits, nodes, blocks, depth), expected


def _quadrature(count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` Gauss-Legendre nodes and weights on [0, 1] (exact for polynomials of degree
    < 2 * count), padded to whole vector lanes with nodes of weight 0 (they add exactly nothing)."""
    x, w = np.polynomial.legendre.leggauss(count)
    pad = _lanes(count) - count
    return np.r_[(x + 1.0) / 2.0, np.full(pad, 0.5)], np.r_[w / 2.0, np.zeros(pad)]


def _lanes(count: int) -> int:
    return LANES * math.ceil(count / LANES)


def _flatten(trees: list[_Tree], max_memory_mb: float) -> _Model:
    t_m = np.array([max(1, math.ceil(t.depth / 2)) for t in trees], dtype=np.int64)
    t_lanes = np.array([_lanes(m) for m in t_m], dtype=np.int64)
    n_splits = sum(len(t.splits) for t in trees)
    slots = np.array([len(t.nodes) for t in trees], dtype=np.int64)
    n_slots = int(slots.sum())
    n_block = sum(len(b) for t in trees for b in t.block.values())
    cat_words = sum(max(s["cats"], default=-1) // 32 + 1 for t in trees for s in t.splits if s["kind"] == _KIND_CAT)
    need = (
        24 * int((slots * t_lanes).sum())
        + 40 * n_slots
        + 40 * n_splits
        + 72 * len(trees)
        + 40 * n_block
        + 4 * cat_words
    )
    if need > max_memory_mb * 2**20:
        raise UnsupportedModel(
            f"its arrays would take {need / 2**20:.1f} MB, over max_memory_mb={max_memory_mb:g} "
            f"({n_slots:,} nodes, up to {int(t_m.max())} quadrature nodes per tree)"
        )

    counts = sorted(set(t_m.tolist())) or [1]
    starts = dict(zip(counts, np.cumsum([0] + [_lanes(m) for m in counts])[:-1].tolist()))
    q_t, q_w = (np.concatenate(v) for v in zip(*(_quadrature(m) for m in counts)))
    q_1mt = 1.0 - q_t
    i64 = lambda n, fill=0: np.full(n, fill, np.int64)
    t_split, t_nsplit, t_slot, t_w = i64(len(trees)), i64(len(trees)), i64(len(trees)), i64(len(trees))
    t_q = np.array([starts[m] for m in t_m.tolist()], dtype=np.int64)
    sp_feat, sp_thr, sp_kind = i64(n_splits), np.zeros(n_splits), np.zeros(n_splits, np.int8)
    sp_dleft, sp_cat, sp_ncat = np.zeros(n_splits, np.bool_), i64(n_splits), i64(n_splits)
    sp_left, sp_right = i64(n_splits), i64(n_splits)
    nd_feat, nd_prev = i64(n_slots), i64(n_slots)
    nd_block, nd_leaf, nd_c = i64(n_slots + 1), i64(n_slots, -1), np.zeros(n_slots)
    f_pass, f_fail, w_in = (np.zeros(int((slots * t_lanes).sum())) for _ in range(3))
    block, cat_bits, retest = [], [], []
    t_retest = i64(len(trees) + 1)
    si = so = wo = 0
    for t, tree in enumerate(trees):
        m, q0 = int(t_lanes[t]), int(t_q[t])
        tq, one_minus, wq = q_t[q0 : q0 + m], q_1mt[q0 : q0 + m], q_w[q0 : q0 + m]
        t_split[t], t_nsplit[t], t_slot[t], t_w[t], t_retest[t] = si, len(tree.splits), so, wo, len(retest) // 4
        for sp in tree.splits:
            sp_feat[si], sp_thr[si], sp_kind[si], sp_dleft[si] = (
                sp["feature"],
                sp["threshold"],
                sp["kind"],
                sp["default_left"],
            )
            sp_left[si], sp_right[si] = sp["left"], sp["right"]
            if sp["kind"] == _KIND_CAT:
                words = [0] * (max(sp["cats"], default=-1) // 32 + 1)
                for c in sp["cats"]:
                    words[c // 32] |= 1 << (c % 32)
                sp_cat[si], sp_ncat[si] = len(cat_bits), len(words)
                cat_bits += words
            si += 1
        for slot, nd in enumerate(tree.nodes):
            pos = 2 * nd["parent"] + nd["side"] if slot else 2 * len(tree.splits)  # siblings side by side
            g, o = so + slot, wo + pos * m
            z, value = nd["z"], nd["value"] if slot >= len(tree.splits) else 1.0
            nd_feat[g] = max(nd["feature"], 0)
            nd_prev[g], nd_leaf[g], nd_block[g] = max(nd["prev"], 0), nd["leaf"], len(block)
            block += tree.block.get(slot, [])
            for below in tree.block.get(slot, []):
                retest += [slot, o, below, nd["feature"]]
            passed = tq + one_minus * z  # t + (1 - t) z: this edge's factor if passed
            w_in[o : o + m] = (1.0 - z) * wq / passed
            if nd["prev"] < 0:  # the path's first test of this feature
                f_pass[o : o + m], f_fail[o : o + m] = passed * value, one_minus * z * value
            else:  # a re-test: replace the earlier test's factor
                zp = nd["zprev"]
                passed_before = tq + one_minus * zp
                f_pass[o : o + m] = passed / passed_before * value
                f_fail[o : o + m] = one_minus * z / passed_before * value
                nd_c[g] = (z / zp if zp > 0 else 0.0) * value
        so += len(tree.nodes)
        wo += len(tree.nodes) * m
    nd_block[n_slots] = len(block)
    t_retest[len(trees)] = len(retest) // 4
    tree = np.zeros((len(trees) + 1, TREE_WIDTH), dtype=np.int64)
    for col, values in (
        (T_SPLIT, t_split),
        (T_NSPLIT, t_nsplit),
        (T_SLOT, t_slot),
        (T_M, t_m),
        (T_LANES, t_lanes),
        (T_W, t_w),
        (T_Q, t_q),
    ):
        tree[:-1, col] = values
    tree[:, T_RETEST] = t_retest
    q_wout = q_w / q_1mt
    fl = np.concatenate([sp_thr, nd_c, q_wout, f_pass, f_fail, w_in])
    starts = np.cumsum([0] + [len(a) for a in (sp_thr, nd_c, q_wout, f_pass, f_fail, w_in)])
    sp_thr, nd_c, q_wout, f_pass, f_fail, w_in = (fl[a:b] for a, b in zip(starts[:-1], starts[1:]))
    tree[-1, [F_THR, F_C, F_QWOUT, F_PASS, F_FAIL, F_WIN]] = starts[:-1]
    split = np.zeros((n_splits, SPLIT_WIDTH), dtype=np.int32)
    tree_of_split = np.repeat(np.arange(len(trees)), t_nsplit)
    for col, values in (
        (S_FEAT, sp_feat),
        (S_LEFT, sp_left),
        (S_RIGHT, sp_right),
        (S_KIND, sp_kind),
        (S_DLEFT, sp_dleft),
        (S_CAT, sp_cat),
        (S_NCAT, sp_ncat),
        (S_PREV, nd_prev[t_slot[tree_of_split] + sp_left]),
    ):
        split[:, col] = values
    return _Model(
        tree.ravel(),
        split.ravel(),
        fl,
        sp_thr,
        np.array(cat_bits, dtype=np.uint32),
        nd_feat,
        nd_prev,
        nd_c,
        nd_block,
        np.array(block, dtype=np.int64),
        np.array(retest, dtype=np.int64),
        f_pass,
        f_fail,
        w_in,
        q_wout,
        int(slots.max()) if len(trees) else 1,
        int(t_lanes.max()) if len(trees) else LANES,
        np.array([t.index for t in trees], dtype=np.int64),
        nd_leaf,
    )
