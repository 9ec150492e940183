"""Compiled kernels of :mod:`serving.model.explainer` (numba): split directions, and the quadrature form of
path-dependent TreeSHAP for one claim at a time and for blocks of claims.

Arrays, as :class:`serving.model.explainer._Model` lays them out. A tree's numbers are one row of ``tree``
(``T_*`` below) and a split's one row of ``split`` (``S_*``). Per tree, nodes are numbered splits
first (preorder), then leaves ("slot"; the node's row in the ``nd_*`` arrays is the tree's ``T_SLOT``
plus the slot). Per node and quadrature node (``T_LANES`` of them, at ``T_W + (2 * parent + side) *
T_LANES``: the two children of a split side by side, in the order of their parents; the root last):

- ``f_pass`` / ``f_fail``: the factor the node's edge multiplies the path product by when the claim
  passes / fails the edge's test (having passed the earlier tests of the same feature), times the
  leaf value for a leaf;
- ``w_in``: the weight of the node's share for its feature when the claim passes every test of it;
and per node ``nd_c``: the factor when an earlier test of the feature already failed (a ratio of
zero fractions, times the leaf value). ``q_wout`` is the weight of a share when the claim fails.

The one-claim kernel moves 4 quadrature nodes at a time (one AVX2 register) with explicit vector
instructions (the ``_v_*`` intrinsics below, a few lines of LLVM IR each) and no data-dependent
branch in its node loops (a mispredicted one per node was its largest cost); its scalar reads skip
numba's negative-index check (``_ld``), and it takes its float arrays as one (``fl``). The block
kernel puts claims in its innermost loops, which the compiler vectorises on its own.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

LANES = 4
"""Quadrature nodes per vector instruction in the one-claim kernel (a tree's count is padded to a
multiple of it with nodes of weight 0)."""

ZERO = 1.0000000180025095e-35
"""LightGBM's kZeroThreshold (1e-35f): its predictor reads any |x| <= this as exactly 0."""

_VEC = ir.VectorType(ir.DoubleType(), LANES)

TREE_WIDTH = 8
T_SPLIT, T_NSPLIT, T_SLOT, T_M, T_LANES, T_W, T_Q, T_RETEST = range(TREE_WIDTH)
"""A tree's row in ``tree`` (int64, one row per tree and one more): offset of its splits, its splits,
offset of its nodes, its quadrature nodes, those padded to whole vectors, offset of its nodes'
vectors, of its quadrature nodes, of its re-tests."""
F_THR, F_C, F_QWOUT, F_PASS, F_FAIL, F_WIN = range(6)
"""The last row of ``tree``: where ``sp_thr``, ``nd_c``, ``q_wout``, ``f_pass``, ``f_fail`` and ``w_in``
start in ``fl``, the one float array that holds them all (``T_RETEST`` there ends the last tree's
re-tests): the one-claim kernel takes one argument for the six (numba's dispatch cost grows with
every array)."""
SPLIT_WIDTH = 8
S_FEAT, S_LEFT, S_RIGHT, S_KIND, S_DLEFT, S_CAT, S_NCAT, S_PREV = range(8)
"""A split's row in ``split`` (int32; one cache line holds two): feature, left and right child slots,
kind, default_left, offset and words of its category set, and its children's ``nd_prev`` (the same
for both: the one-claim kernel reads it from the row it has just read)."""


# --- split directions -------------------------------------------------------------------------------


@njit(inline="always")
def goes_right(fval, kind, threshold, default_left, cat_off, cat_len, cat_bits):
    """LightGBM's ``Tree::Decision`` for a value as its predictor sees it (``include/LightGBM/tree.h``)."""
    if kind == 0:  # numeric, NaN read as 0: the common case first
        return not (0.0 if np.isnan(fval) or -ZERO <= fval <= ZERO else fval) <= threshold
    if -ZERO <= fval <= ZERO:
        fval = 0.0
    if kind == 3:  # categorical: listed codes go left; NaN, negative, huge and unlisted codes go right
        if np.isnan(fval) or fval <= -1.0 or fval >= 2147483648.0:
            return True
        code = int(fval)
        word = code >> 5
        if word >= cat_len:
            return True
        return ((cat_bits[cat_off + word] >> np.uint32(code & 31)) & np.uint32(1)) == 0
    if np.isnan(fval):
        if kind == 2:  # missing_type NaN
            return not default_left
        fval = 0.0
    if kind == 1 and fval == 0.0:  # missing_type Zero
        return not default_left
    return not fval <= threshold


@njit(cache=True)
def route(x, out, tree, split, sp_thr, cat_bits, t_index, nd_leaf):
    """The LightGBM leaf index each row reaches in each tree."""
    for r in range(x.shape[0]):
        for t in range(len(tree) // TREE_WIDTH - 1):
            s0, ns, g0, _, _, _, _ = _tree_at(tree, t)
            slot = 0
            while slot < ns:
                g = s0 + slot
                if _goes_right_at(x, r, g, split, sp_thr, 0, cat_bits):
                    slot = _ld(split, SPLIT_WIDTH * g + S_RIGHT)
                else:
                    slot = _ld(split, SPLIT_WIDTH * g + S_LEFT)
            out[r, t_index[t]] = nd_leaf[g0 + slot]


# --- vector steps, LANES wide (LLVM IR) -------------------------------------------------------------


def _at(context, builder, arrty, arr, offset):
    """A vector pointer to ``arr[offset:offset + LANES]``."""
    ary = context.make_array(arrty)(context, builder, arr)
    return builder.bitcast(builder.gep(ary.data, [offset]), _VEC.as_pointer())


def _splat(builder, x):
    v = builder.insert_element(ir.Constant(_VEC, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


@intrinsic
def _v_down(typingctx, q, dst, src, fa, fao, fb, fbo, ka, kb, kc):
    """q[dst:+L] = q[src:+L] * (ka * fa[fao:+L] + kb * fb[fbo:+L] + kc), L = LANES"""
    sig = types.void(
        q, types.intp, types.intp, fa, types.intp, fb, types.intp, types.float64, types.float64, types.float64
    )

    def codegen(context, builder, signature, args):
        q_, dst_, src_, fa_, fao_, fb_, fbo_, ka_, kb_, kc_ = args
        ts = signature.args
        parent = builder.load(_at(context, builder, ts[0], q_, src_), align=8)
        a = builder.fmul(builder.load(_at(context, builder, ts[3], fa_, fao_), align=8), _splat(builder, ka_))
        b = builder.fmul(builder.load(_at(context, builder, ts[5], fb_, fbo_), align=8), _splat(builder, kb_))
        factor = builder.fadd(builder.fadd(a, b), _splat(builder, kc_))
        builder.store(builder.fmul(parent, factor), _at(context, builder, ts[0], q_, dst_), align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _v_share(typingctx, acc, ao, w1, w1o, w0, w0o, q, qo, k1, k0):
    """acc[ao:+L] += (k1 * w1[w1o:+L] + k0 * w0[w0o:+L]) * q[qo:+L]"""
    sig = types.void(acc, types.intp, w1, types.intp, w0, types.intp, q, types.intp, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        acc_, ao_, w1_, w1o_, w0_, w0o_, q_, qo_, k1_, k0_ = args
        ts = signature.args
        target = _at(context, builder, ts[0], acc_, ao_)
        w1v = builder.load(_at(context, builder, ts[2], w1_, w1o_), align=8)
        w0v = builder.load(_at(context, builder, ts[4], w0_, w0o_), align=8)
        w = builder.fadd(builder.fmul(w1v, _splat(builder, k1_)), builder.fmul(w0v, _splat(builder, k0_)))
        share = builder.fmul(w, builder.load(_at(context, builder, ts[6], q_, qo_), align=8))
        builder.store(builder.fadd(builder.load(target, align=8), share), target, align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _v_share2_sum(typingctx, acc, ao, w1, wa, wb, w0, w0o, q, qa, qb, qk, ka1, ka0, kb1, kb0):
    """acc[ao:+L] += (ka1 * w1[wa:+L] + ka0 * w0[w0o:+L]) * q[qa:+L] + (kb1 * w1[wb:+L] + kb0 * w0[w0o:+L]) * q[qb:+L],
    then q[qk:+L] = q[qa:+L] + q[qb:+L] from the same loads: a split's two children's shares of its
    feature, and their sum."""
    sig = types.void(
        acc,
        types.intp,
        w1,
        types.intp,
        types.intp,
        w0,
        types.intp,
        q,
        types.intp,
        types.intp,
        types.intp,
        types.float64,
        types.float64,
        types.float64,
        types.float64,
    )

    def codegen(context, builder, signature, args):
        acc_, ao_, w1_, wa_, wb_, w0_, w0o_, q_, qa_, qb_, qk_, ka1, ka0, kb1, kb0 = args
        ts = signature.args
        target = _at(context, builder, ts[0], acc_, ao_)
        w0v = builder.load(_at(context, builder, ts[5], w0_, w0o_), align=8)
        va = builder.load(_at(context, builder, ts[7], q_, qa_), align=8)
        vb = builder.load(_at(context, builder, ts[7], q_, qb_), align=8)

        def share(w_off, v, k1, k0):
            w1v = builder.load(_at(context, builder, ts[2], w1_, w_off), align=8)
            w = builder.fadd(builder.fmul(w1v, _splat(builder, k1)), builder.fmul(w0v, _splat(builder, k0)))
            return builder.fmul(w, v)

        both = builder.fadd(share(wa_, va, ka1, ka0), share(wb_, vb, kb1, kb0))
        builder.store(builder.fadd(builder.load(target, align=8), both), target, align=8)
        builder.store(builder.fadd(va, vb), _at(context, builder, ts[7], q_, qk_), align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _ld(typingctx, arr, i):
    """``arr[i]`` without numba's wrap-around of negative indices (the kernel's never are): a
    compare and a mask less per read, in the loops that do little else."""
    sig = arr.dtype(arr, types.intp)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load(builder.gep(ary.data, [args[1]]))

    return sig, codegen


@njit(inline="always")
def _goes_right_at(x, r, g, split, thr, thr_at, cat_bits):
    """:func:`goes_right` for row ``r`` at split ``g`` (its row in ``split``; its threshold at
    ``thr[thr_at + g]``)."""
    row = SPLIT_WIDTH * g
    return goes_right(
        x[r, _ld(split, row + S_FEAT)],
        _ld(split, row + S_KIND),
        _ld(thr, thr_at + g),
        _ld(split, row + S_DLEFT),
        _ld(split, row + S_CAT),
        _ld(split, row + S_NCAT),
        cat_bits,
    )


@njit(inline="always")
def _tree_at(tree, t):
    """Tree ``t``'s row of ``tree``: the offset of its splits, its splits, the offset of its nodes, its
    quadrature nodes, those padded to whole vectors, the offsets of its vectors and quadrature nodes."""
    row = TREE_WIDTH * t
    return (
        _ld(tree, row + T_SPLIT),
        _ld(tree, row + T_NSPLIT),
        _ld(tree, row + T_SLOT),
        _ld(tree, row + T_M),
        _ld(tree, row + T_LANES),
        _ld(tree, row + T_W),
        _ld(tree, row + T_Q),
    )


@njit(inline="always")
def _directions(x, r, s0, ns, right, split, thr, thr_at, cat_bits):
    """``right[k]`` = 1 if row ``r`` goes right at split ``k`` of the tree whose splits start at ``s0``."""
    for k in range(ns):
        right[k] = _goes_right_at(x, r, s0 + k, split, thr, thr_at, cat_bits)


# --- SHAP -------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def explain_rows(x, out, first, end, tree, split, fl, cat_bits, retest, max_slots, max_lanes):
    """Add each row's SHAP values from trees ``first`` to ``end - 1`` to ``out``, one row at a time
    (the lowest latency for one claim).

    Per tree: every split's direction; top down, split by split, the vectors ``q`` of path products
    at the quadrature nodes of its two children and whether the claim passes every test of their
    feature so far; bottom up, each split adds its two children's shares of its feature, then sums
    them; last, the subtrees below a re-test of a feature are taken back out of the share of the
    edge above (they count at the re-test), from the tree's flat list ``retest`` (four numbers each:
    the edge's slot, its ``w_in`` offset, the re-testing split's slot, the feature; a loop per edge
    mispredicted). Choices are made by multiplying by 0 or 1. Siblings are handled together (one
    update of the feature's sum and their sum from one read of each) and their data lie side by side."""
    nf = out.shape[1]
    ml = max_lanes
    head = len(tree) - TREE_WIDTH  # the last row: where each float array starts in ``fl``
    o_thr, o_c, o_qw = _ld(tree, head + F_THR), _ld(tree, head + F_C), _ld(tree, head + F_QWOUT)
    o_pass, o_fail, o_win = _ld(tree, head + F_PASS), _ld(tree, head + F_FAIL), _ld(tree, head + F_WIN)
    right = np.empty(max_slots, np.int64)
    passes = np.empty(max_slots)
    q = np.empty(max_slots * ml)
    acc = np.empty(nf * LANES)  # a feature's sums over every quadrature node, folded into one vector
    for r in range(x.shape[0]):
        acc[:] = 0.0
        for t in range(first, end):
            s0, ns, g0, _, lanes, wo, qo = _tree_at(tree, t)
            _directions(x, r, s0, ns, right, split, fl, o_thr, cat_bits)
            for m in range(lanes):
                q[m] = 1.0
            passes[0] = 1.0  # the root: also the "earlier test" of a feature's first test
            for k in range(ns):  # preorder: a split before its children
                a = _ld(split, SPLIT_WIDTH * (s0 + k) + S_LEFT)
                b = _ld(split, SPLIT_WIDTH * (s0 + k) + S_RIGHT)
                before = _ld(passes, _ld(split, SPLIT_WIDTH * (s0 + k) + S_PREV))  # the same for both children
                goes = np.float64(_ld(right, k))  # no branch: it would mispredict
                now_a = before * (1.0 - goes)
                now_b = before * goes
                passes[a] = now_a
                passes[b] = now_b
                ca = (1.0 - before) * _ld(fl, o_c + g0 + a)
                cb = (1.0 - before) * _ld(fl, o_c + g0 + b)
                wa = wo + 2 * k * lanes
                for c in range(0, lanes, LANES):
                    _v_down(
                        q, a * ml + c, k * ml + c, fl, o_pass + wa + c, fl, o_fail + wa + c, now_a, before - now_a, ca
                    )
                    _v_down(
                        q,
                        b * ml + c,
                        k * ml + c,
                        fl,
                        o_pass + wa + lanes + c,
                        fl,
                        o_fail + wa + lanes + c,
                        now_b,
                        before - now_b,
                        cb,
                    )
            for k in range(ns - 1, -1, -1):  # reverse preorder: children before their parent
                a = _ld(split, SPLIT_WIDTH * (s0 + k) + S_LEFT)
                b = _ld(split, SPLIT_WIDTH * (s0 + k) + S_RIGHT)
                f = _ld(split, SPLIT_WIDTH * (s0 + k) + S_FEAT) * LANES
                na = _ld(passes, a)
                nb = _ld(passes, b)
                wa = wo + 2 * k * lanes
                for c in range(0, lanes, LANES):  # (the root's sum, at k = 0, is written and never read)
                    _v_share2_sum(
                        acc,
                        f,
                        fl,
                        o_win + wa + c,
                        o_win + wa + lanes + c,
                        fl,
                        o_qw + qo + c,
                        q,
                        a * ml + c,
                        b * ml + c,
                        k * ml + c,
                        na,
                        na - 1.0,
                        nb,
                        nb - 1.0,
                    )
            for j in range(4 * _ld(tree, TREE_WIDTH * t + T_RETEST), 4 * _ld(tree, TREE_WIDTH * (t + 1) + T_RETEST), 4):
                p = _ld(passes, _ld(retest, j))
                w = _ld(retest, j + 1)
                below = _ld(retest, j + 2) * ml
                f = _ld(retest, j + 3) * LANES
                for c in range(0, lanes, LANES):
                    _v_share(acc, f, fl, o_win + w + c, fl, o_qw + qo + c, q, below + c, -p, 1.0 - p)
        for f in range(nf):
            total = 0.0
            for m in range(LANES):
                total += acc[f * LANES + m]
            out[r, f] += total


@njit(cache=True, nogil=True, parallel=True)
def explain_rows_split(x, out, other, middle, tree, split, fl, cat_bits, retest, max_slots, max_lanes):
    """:func:`explain_rows` with the trees split at ``middle`` over two of numba's threads (``other``,
    zeros of ``out``'s shape, takes the second half; ``out`` gets the sum). Under OpenMP, numba's
    threads wait spinning for a moment after their work, so the hand-off is cheap next to a thread
    pool's wake-up."""
    for half in prange(2):
        first, end, target = (0, middle, out) if half == 0 else (middle, len(tree) // TREE_WIDTH - 1, other)
        explain_rows(x, target, first, end, tree, split, fl, cat_bits, retest, max_slots, max_lanes)
    out += other


@njit(cache=True, nogil=True)
def explain_block(
    x,
    out,
    block_rows,
    tree,
    split,
    sp_thr,
    cat_bits,
    nd_feat,
    nd_prev,
    nd_c,
    nd_block,
    block,
    f_pass,
    f_fail,
    w_in,
    q_wout,
    max_slots,
    max_lanes,
):
    """:func:`explain_rows`' values (to rounding: the sums run in another order) for blocks of rows,
    tree by tree, with the rows in the innermost loops (vectorised by the compiler; a tree's arrays stay
    in cache for the block). Only a tree's own quadrature nodes are visited, not the padding."""
    n, nf = x.shape
    xt = np.empty((nf, block_rows))
    acc = np.empty((nf, block_rows))
    right = np.empty((max_slots, block_rows))
    passes = np.empty((max_slots, block_rows))
    q = np.empty((max_slots, max_lanes, block_rows))
    for start in range(0, n, block_rows):
        nb = min(block_rows, n - start)
        for f in range(nf):
            for r in range(nb):
                xt[f, r] = x[start + r, f]
                acc[f, r] = 0.0
        for t in range(len(tree) // TREE_WIDTH - 1):
            s0, ns, g0, mq, lanes, wo, qo = _tree_at(tree, t)
            for k in range(ns):
                g = s0 + k
                kind = _ld(split, SPLIT_WIDTH * g + S_KIND)
                fi = _ld(split, SPLIT_WIDTH * g + S_FEAT)
                thr = sp_thr[g]
                if kind == 0:  # numeric, NaN read as 0: the common case, vectorised
                    for r in range(nb):
                        v = xt[fi, r]
                        v = 0.0 if np.isnan(v) or -ZERO <= v <= ZERO else v
                        right[k, r] = 0.0 if v <= thr else 1.0
                else:
                    row = SPLIT_WIDTH * g
                    dleft, cat, ncat = _ld(split, row + S_DLEFT), _ld(split, row + S_CAT), _ld(split, row + S_NCAT)
                    for r in range(nb):
                        right[k, r] = 1.0 if goes_right(xt[fi, r], kind, thr, dleft, cat, ncat, cat_bits) else 0.0
            for m in range(mq):
                for r in range(nb):
                    q[0, m, r] = 1.0
            for r in range(nb):
                passes[0, r] = 1.0
            for e in range(2 * ns):  # the splits' children in preorder of their parents (their data's order)
                p = e >> 1
                sl = _ld(split, SPLIT_WIDTH * (s0 + p) + S_LEFT + (e & 1))  # S_RIGHT follows S_LEFT
                g = g0 + sl
                prev = nd_prev[g]
                side = np.float64(e & 1)
                for r in range(nb):
                    passes[sl, r] = (1.0 - abs(right[p, r] - side)) * passes[prev, r]
                c = nd_c[g]
                w = wo + e * lanes
                for m in range(mq):
                    fa = f_pass[w + m]
                    fb = f_fail[w + m]
                    for r in range(nb):
                        now = passes[sl, r]
                        before = passes[prev, r]
                        q[sl, m, r] = q[p, m, r] * (now * fa + (before - now) * fb + (1.0 - before) * c)
            for k in range(ns - 1, -1, -1):
                a_ = _ld(split, SPLIT_WIDTH * (s0 + k) + S_LEFT)
                b_ = _ld(split, SPLIT_WIDTH * (s0 + k) + S_RIGHT)
                for m in range(mq):
                    for r in range(nb):
                        q[k, m, r] = q[a_, m, r] + q[b_, m, r]
            for e in range(2 * ns):
                sl = _ld(split, SPLIT_WIDTH * (s0 + (e >> 1)) + S_LEFT + (e & 1))
                g = g0 + sl
                f = nd_feat[g]
                for j in range(nd_block[g], nd_block[g + 1]):  # in place: the blocks lie below, read first
                    u = block[j]
                    for m in range(mq):
                        for r in range(nb):
                            q[sl, m, r] -= q[u, m, r]
                w = wo + e * lanes
                for m in range(mq):
                    wi = w_in[w + m]
                    wf = -q_wout[qo + m]
                    for r in range(nb):
                        acc[f, r] += (wi if passes[sl, r] > 0.5 else wf) * q[sl, m, r]
        for f in range(nf):
            for r in range(nb):
                out[start + r, f] += acc[f, r]


@njit(cache=True, nogil=True)
def explain_block_rows(
    x,
    out,
    tree,
    split,
    sp_thr,
    cat_bits,
    nd_feat,
    nd_prev,
    nd_c,
    nd_block,
    block,
    f_pass,
    f_fail,
    w_in,
    q_wout,
    max_slots,
    max_lanes,
):
    """:func:`explain_block`'s arithmetic, operation for operation, one row at a time: the same
    values to the last bit (the stable mode of :class:`serving.model.explainer.Explainer`), without the
    block kernel's per-loop set-up, which dominates for a claim or two. Scalar reads go through
    ``_ld`` as in :func:`explain_rows` (the arithmetic, and so every bit, is unchanged)."""
    n, nf = x.shape
    acc = np.empty(nf)
    right = np.empty(max_slots)
    passes = np.empty(max_slots)
    q = np.empty((max_slots, max_lanes))
    for r in range(n):
        for f in range(nf):
            acc[f] = 0.0
        for t in range(len(tree) // TREE_WIDTH - 1):
            s0, ns, g0, mq, lanes, wo, qo = _tree_at(tree, t)
            _directions(x, r, s0, ns, right, split, sp_thr, 0, cat_bits)
            for m in range(mq):
                q[0, m] = 1.0
            passes[0] = 1.0
            for e in range(2 * ns):
                p = e >> 1
                sl = _ld(split, SPLIT_WIDTH * (s0 + p) + S_LEFT + (e & 1))  # S_RIGHT follows S_LEFT
                g = g0 + sl
                prev = _ld(nd_prev, g)
                side = np.float64(e & 1)
                passes[sl] = (1.0 - abs(_ld(right, p) - side)) * _ld(passes, prev)
                c = _ld(nd_c, g)
                w = wo + e * lanes
                now = _ld(passes, sl)
                before = _ld(passes, prev)
                for m in range(mq):
                    q[sl, m] = q[p, m] * (
                        now * _ld(f_pass, w + m) + (before - now) * _ld(f_fail, w + m) + (1.0 - before) * c
                    )
            for k in range(ns - 1, -1, -1):
                a_ = _ld(split, SPLIT_WIDTH * (s0 + k) + S_LEFT)
                b_ = _ld(split, SPLIT_WIDTH * (s0 + k) + S_RIGHT)
                for m in range(mq):
                    q[k, m] = q[a_, m] + q[b_, m]
            for e in range(2 * ns):
                sl = _ld(split, SPLIT_WIDTH * (s0 + (e >> 1)) + S_LEFT + (e & 1))
                g = g0 + sl
                f = _ld(nd_feat, g)
                for j in range(_ld(nd_block, g), _ld(nd_block, g + 1)):
                    u = _ld(block, j)
                    for m in range(mq):
                        q[sl, m] -= q[u, m]
                w = wo + e * lanes
                passed = _ld(passes, sl) > 0.5
                for m in range(mq):
                    acc[f] += (_ld(w_in, w + m) if passed else -_ld(q_wout, qo + m)) * q[sl, m]
        for f in range(nf):
            out[r, f] += acc[f]
