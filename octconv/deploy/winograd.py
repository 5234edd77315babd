"""Winograd convolution F(m x m, 3 x 3) for 3x3 stride-1 convolutions (Lavin and Gray,
"Fast Algorithms for Convolutional Neural Networks", CVPR 2016).

An output tile of m x m pixels comes from an a x a input tile (a = m + 2) in three
steps: the input tile is transformed, ``V = Bt d B``; each of the a x a transformed
positions is a matrix product over input channels, ``M = sum_c U[c] V[c]`` with the
weights transformed once at lowering, ``U = G g Gt``; the output is ``At M A``. That
is a x a products per m x m outputs instead of 9 m x m: 2.25 x fewer multiplies for
F(2x2) and 4 x fewer for F(4x4). The transforms below use the interpolation points
0, 1, -1 (F(2x2)) and 0, 1, -1, 2, -2 and infinity (F(4x4)); their float32 error is
about 1e-6 and 1e-5 of the output scale per layer.

Layouts: input and output NCHW[cb]c as every kernel here; transformed weights
(a, a, OB, IB, ib, ob). The products prefetch the next pass's weights as they compute
(:meth:`Winograd._prefetch_next_pass`).
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from tvm import te, tirx

from octconv.deploy.kernels import F32, Epilogue, Kernel, _pad, _parallel, _schedule_padding, \
    _volume, _with_epilogue, prefetch_ahead, row_parts, weight_buffer

__all__ = ["Winograd", "transform_weight", "output_tile", "worthwhile", "RULE"]

# (Bt, G, At) per output tile size m
MATRICES = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


def output_tile(size):
    """The fixed rule's output tile m (used where no choice was measured:
    :mod:`octconv.deploy.algorithms`) for an output of ``size`` pixels a side: F(4x4)
    from 14 pixels up, F(2x2) below. (On 7-13 px maps F(4x4) wins alone, 1.6-2 x over
    F(2x2) up to 256 channels, but loses inside a network: its transformed weights, 36
    per pair of channels, 4 x the direct kernel's, are read from memory for a few tiles
    each.)"""
    return 4 if size >= 14 else 2


RULE = ("3x3 stride-1 convolutions by Winograd: F(4x4, 3x3) on maps of >= 14 px with >= 16 "
        "channels, F(2x2, 3x3) on 7-13 px maps with >= 32; the rest direct")


def worthwhile(size, in_channels, out_channels):
    """Whether, by the fixed rule (:data:`RULE`, used where no choice was measured), a
    3x3 stride-1 convolution with an output of ``size`` (rows, cols) runs faster by
    Winograd than directly. The transforms cost per channel
    and the products per pair of channels, so few channels favour the direct kernel.
    Measured on an AVX-512 Zen 4 (ms per call, direct / Winograd, both tuned): 56 px
    16 -> 16 channels .135 / .073, 28 px 48 -> 16 .104 / .059, 14 px 16 -> 16
    .0088 / .0068, but 7 px 16 -> 16 .0023 / .0032 (F(2x2)); at 7 px the threshold of
    32 is a near tie (32 -> 32 .0090 / .0097, 64 -> 64 .033 / .030)."""
    channels, side = min(in_channels, out_channels), min(size)
    if side >= 14:
        return channels >= 16
    return side >= 7 and channels >= 32


def transform_weight(packed, m):
    """Direct weights packed (OB, IB, 3, 3, ib, ob) to Winograd's (a, a, OB, IB, ib, ob):
    ``G g Gt`` for every pair of channels at once, as one matrix product of ``G (x) G``
    (a*a x 9) with the nine taps of all pairs (9 x OB IB ib ob), whose result is already
    in the transformed layout, with one temporary array instead of five (512 -> 512
    channels: 4.5-4.8 x faster than two float64 tensordots by F(2x2), 2.4-2.7 x by
    F(4x4)).

    The product is numpy's own ``einsum`` loop, not BLAS: the library cache names a
    library by these bytes, and BLAS's result changes in the last bits with its thread
    count (``OMP_NUM_THREADS``), so a network compiled in a process with another count
    was built again (every ResNet library twice in a ``tools/table2.py`` run)."""
    g = np.asarray(MATRICES[m][1])
    a = len(g)
    taps = np.ascontiguousarray(np.moveaxis(packed, (2, 3), (0, 1)), np.float32).reshape(9, -1)
    u = np.einsum("rk,kn->rn", np.kron(g, g).astype(np.float32), taps, optimize=False)
    return u.reshape((a, a) + packed.shape[:2] + packed.shape[4:])


def _combine(row, terms):
    """The sum of coefficient x term over the nonzero coefficients of ``row``."""
    value = None
    for c, term in zip(row, terms):
        if c == 0:
            continue
        part = term if c == 1 else -term if c == -1 else term * tirx.const(float(c), F32)
        value = part if value is None else value + part
    return value


def _select(index, exprs):
    """``exprs[index]`` for a loop variable (folds to one once the loop is unrolled)."""
    out = exprs[-1]
    for j in range(len(exprs) - 2, -1, -1):
        out = tirx.Select(index == j, exprs[j], out)
    return out


class WinogradTile(NamedTuple):
    """The search knobs of a Winograd convolution: ``pixel_tiles`` m x m output tiles
    x ``out_blocks`` channel blocks per batched product, ``in_blocks`` input-channel
    blocks reduced per pass."""
    pixel_tiles: int
    out_blocks: int
    in_blocks: int


@dataclass(frozen=True)
class Winograd(Kernel):
    """3x3 stride-1 convolution of NCHW[ib]c data by F(m x m, 3 x 3), then the epilogue.
    Tiles: (pixels tiles per register tile, output blocks per register tile, input
    blocks per pass)."""
    data: tuple          # (N, IB, H, W, ib)
    out_blocks: int
    out_block: int
    pad: int
    m: int
    epilogue: Epilogue

    @property
    def out_shape(self):
        n, _, h, w, _ = self.data
        return (n, self.out_blocks, h + 2 * self.pad - 2, w + 2 * self.pad - 2, self.out_block)

    @property
    def weight_shape(self):
        a = self.m + 2
        return (a, a, self.out_blocks, self.data[1], self.data[4], self.out_block)

    @property
    def macs(self):
        """The direct convolution's multiply-adds (Winograd's own are fewer)."""
        return _volume(self.out_shape) * self.data[1] * self.data[4] * 9

    def tiles(self, lanes):
        """Tiles (pixel tiles, output blocks, input blocks per pass), best-guess first:
        register tiles of pixel tiles x output blocks whose accumulators fit the vector
        registers (24 of 32 zmm with AVX-512, 12 of 16 ymm with AVX2), 4 x 4 and 4 x 1
        first (among the fastest on the layers of ResNet-50 on an AVX-512 Zen 4; the
        wider tiles are for CPUs with two full-width FMA units), each with the two most
        even input-channel passes."""
        vectors = max(1, self.out_block // lanes)
        budget = 24 if lanes == 16 else 12
        icb = self.data[1]
        blocked = [d for d in (2, 4, 1) if icb % d == 0]
        found = []
        for rp, ot in ((4, 4), (4, 1), (4, 2), (8, 2), (2, 2), (6, 1), (3, 2), (8, 1),
                       (2, 1), (1, 1)):
            if rp * ot * vectors <= budget and self.out_blocks % ot == 0:
                found += [WinogradTile(rp, ot, icin) for icin in blocked[:2]]
        return found

    def compute(self):
        n_, ib_, _, _, ib = self.data
        m, a = self.m, self.m + 2
        bt, _, at = MATRICES[m]
        shape = self.out_shape
        _, ob_, oh, ow, ob = shape
        th, tw = -(-oh // m), -(-ow // m)
        tiles = n_ * th * tw
        data = te.placeholder(self.data, F32, "data")
        weight = te.placeholder(self.weight_shape, F32, "weight")
        padded = _pad(data, (n_, ib_, th * m, tw * m, ib), 3, 1, self.pad, 0.0)

        def position(p):
            return p // (th * tw), (p % (th * tw)) // tw, p % tw

        def rows(e, s, c, p, i):
            n, ty, tx = position(p)
            terms = [padded[n, c, ty * m + r, tx * m + s, i] for r in range(a)]
            return _select(e, [_combine(bt[k], terms) for k in range(a)])

        bt_rows = te.compute((a, a, ib_, tiles, ib), rows, name="bt_rows")
        v = te.compute((a, a, ib_, tiles, ib), lambda e, u, c, p, i: _select(
            u, [_combine(bt[k], [bt_rows[e, s, c, p, i] for s in range(a)]) for k in range(a)]),
            name="bt_cols")
        icb = te.reduce_axis((0, ib_), "icb")
        ic = te.reduce_axis((0, ib), "ic")
        product = te.compute((a, a, ob_, tiles, ob), lambda e, u, oc, p, o: te.sum(
            v[e, u, icb, p, ic] * weight[e, u, oc, icb, ic, o], axis=[icb, ic]), name="gemm")
        at_rows = te.compute((m, a, ob_, tiles, ob), lambda r, u, oc, p, o: _select(
            r, [_combine(at[k], [product[e, u, oc, p, o] for e in range(a)]) for k in range(m)]),
            name="at_rows")

        def cols(n, oc, y, x, o):
            p = n * th * tw + (y // m) * tw + x // m
            terms = [at_rows[y % m, u, oc, p, o] for u in range(a)]
            return _select(x % m, [_combine(at[k], terms) for k in range(m)])

        conv = te.compute(shape, cols, name="at_cols")
        extra, out = _with_epilogue(self.epilogue, conv, shape)
        return [data, weight] + extra, out

    def _prefetch_next_pass(self, sch, outer, po, tile):
        """Prefetch the next pass's weights (``ot`` output blocks x ``icin`` input
        blocks, in the order the products read them; ``outer``: the loops e, u, oco
        and icbo) during this pass, spread over its groups of pixel tiles ``po``
        (:func:`~octconv.deploy.kernels.prefetch_ahead`). With their weights flushed
        from the caches before each call, as inside a network (1 thread, an Intel
        Xeon), a 512 -> 512 channel F(2x2) layer on a 7 px map took 1.50 ms instead of
        1.88 (1.00 instead of 1.11 in cache), a 256 -> 256 channel F(4x4) layer on 14
        px 0.93 instead of 1.11. Prefetched one output block after another, instead of
        as read, the first took 1.84."""
        rp, ot, icin = tile
        e, u, oco, icbo = [sch.get(loop).loop_var for loop in outer]
        weight = weight_buffer(sch, "gemm")

        def row(r):
            return tirx.BufferLoad(weight, [e, u, *self._weight_row(
                r, oco * ot, (icbo + 1) * icin, ot), 0])

        prefetch_ahead(sch, po, [], ot * icin * self.data[4], row,
                       icin * self.data[4] * ot * rp)

    def _weight_row(self, r, first_block, first_in, blocks):
        """The indices (output block, input block, input channel) of the ``r``-th row
        (a vector of an output block's lanes) of one transformed position's weights that
        a pass of the products over ``blocks`` output blocks from ``first_block`` reads,
        over input blocks from ``first_in``, in the order it reads them: its output
        blocks for each input channel; a block past the last is clamped to it."""
        ib = self.data[4]
        channel = r // blocks
        return (tirx.min(first_block + r % blocks, self.out_blocks - 1),
                tirx.min(first_in + channel // ib, self.data[1] - 1), channel % ib)

    def schedule(self, sch, tile):
        rp, ot, icin = tile
        m = self.m
        # input transform: one a x a x lanes tile per (input block, pixel tile)
        cols = sch.get_sblock("bt_cols")
        e, u, c, p, i = sch.get_loops(cols)
        part, p = row_parts(sch, p)
        sch.reorder(part, c, p, e, u, i)
        rows = sch.get_sblock("bt_rows")
        sch.compute_at(rows, p)
        for block in (rows, cols):
            loops = sch.get_loops(block)
            sch.vectorize(loops[-1])
            for loop in loops[3:-1]:
                sch.unroll(loop)
        _parallel(sch, part, c)
        # the a x a matrix products, register-tiled like a 1x1 convolution
        gemm = sch.get_sblock("gemm")
        e, u, oc, p, o, icb, ic = sch.get_loops(gemm)
        oco, oci = sch.split(oc, [None, ot])
        po, pi = sch.split(p, [None, rp])
        icbo, icbi = sch.split(icb, [None, icin])
        sch.reorder(e, u, oco, icbo, po, icbi, ic, oci, pi, o)
        sch.vectorize(o)
        sch.unroll(oci)
        sch.unroll(pi)
        self._prefetch_next_pass(sch, (e, u, oco, icbo), po, tile)
        _parallel(sch, e, u, oco)
        sch.decompose_reduction(gemm, icbo)
        # output transform and epilogue per m x m output tile
        epilogue = sch.get_sblock("epilogue")
        n, oc, y, x, o = sch.get_loops(epilogue)
        yo, yi = sch.split(y, [None, m])
        xo, xi = sch.split(x, [None, m])
        part, yo = row_parts(sch, yo)
        sch.reorder(n, part, oc, yo, xo, yi, xi, o)
        sch.compute_at(sch.get_sblock("at_cols"), xo)
        sch.compute_at(sch.get_sblock("at_rows"), xo)
        for name in ("at_rows", "at_cols", "epilogue"):
            loops = sch.get_loops(sch.get_sblock(name))
            sch.vectorize(loops[-1])
            for loop in loops[5:-1]:
                sch.unroll(loop)
        _parallel(sch, n, part, oc)
        _schedule_padding(sch)
