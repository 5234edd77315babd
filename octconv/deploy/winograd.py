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
(a, a, OB, IB, ib, ob). The products prefetch the weights of a later pass as they
compute (:meth:`Winograd._prefetch_later_pass`).

Two schedules (:attr:`Winograd.banded`). A layer whose transformed weights fit half a
core's L2 cache runs in bands of output tile rows, one parallel loop: each band
transforms its input tiles, multiplies them by all the weights and transforms its
output, so that a thread hands nothing to another and the transformed tiles stay in its
cache. A layer with more weights runs each step over the whole map in a parallel loop
of its own, the products split by transformed position and output blocks, so that each
thread reads its share of the weights once.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from tvm import te, tirx

from octconv.deploy.kernels import F32, Epilogue, Kernel, _pad, _padding_block, _parallel, \
    _schedule_padding, _volume, _with_epilogue, block_pairs, part_count, prefetch_ahead, \
    row_parts, weight_buffer

__all__ = ["Winograd", "transform_weight", "output_tile", "worthwhile", "band_bytes", "RULE",
           "BANDED_WEIGHT_BYTES"]

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


# the products prefetch the weights of the pass this many passes after the current one
# (see Winograd._prefetch_later_pass)
PASSES_AHEAD = 2

# transformed weights up to this size run in bands (:attr:`Winograd.banded`) where the
# L2 cache's size is not known (cross-compiling): half of a 2 MB L2 cache
BANDED_WEIGHT_BYTES = 1 << 20


def band_bytes(l2_bytes):
    """The most bytes of transformed weights that a Winograd layer runs in bands with
    (:attr:`Winograd.banded`), each band reading them all again: half of a core's L2
    cache of ``l2_bytes`` (None: not known, :data:`BANDED_WEIGHT_BYTES`). On the Zen 5
    of stop 59 (1 MB of L2 a core), bands up to 512 KB instead of 1 MB ran
    Oct-ResNet-50 alpha .5 in 0.94-0.95 x the time on 2 threads and 0.98 on 1, its
    stage-2 64 -> 64 channel F(4x4) layers on 28 px (590 KB) step by step
    (results/NOTES.md, stop 59)."""
    return BANDED_WEIGHT_BYTES if l2_bytes is None else l2_bytes // 2


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
    blocks per pass). ``band_bytes``: the most bytes of transformed weights it runs in
    bands with (:func:`band_bytes`). With ``paired`` (8-channel output blocks on 16-lane
    vectors, as :attr:`~octconv.deploy.kernels.Conv.paired`), the products of two output
    blocks share each 16-lane accumulator: transformed weights packed by pairs of
    blocks, the products in (a, a, pairs, tiles, 2 x ob), the output transform reading
    each block's half."""
    data: tuple          # (N, IB, H, W, ib)
    out_blocks: int
    out_block: int
    pad: int
    m: int
    epilogue: Epilogue
    paired: bool = False
    band_bytes: int = BANDED_WEIGHT_BYTES

    @property
    def tile_blocks(self):
        """(blocks, channels of each) of the products: output blocks, or their pairs."""
        return block_pairs(self.out_blocks, self.out_block, self.paired)

    @property
    def out_shape(self):
        n, _, h, w, _ = self.data
        return (n, self.out_blocks, h + 2 * self.pad - 2, w + 2 * self.pad - 2, self.out_block)

    @property
    def weight_shape(self):
        a = self.m + 2
        blocks, width = self.tile_blocks
        return (a, a, blocks, self.data[1], self.data[4], width)

    @property
    def macs(self):
        """The direct convolution's multiply-adds (Winograd's own are fewer)."""
        return _volume(self.out_shape) * self.data[1] * self.data[4] * 9

    @property
    def banded(self):
        """Whether the layer runs in bands of output tile rows, one parallel loop
        (:meth:`_schedule_banded`), not step by step over the whole map: where its
        transformed weights, read again by each band, take at most ``band_bytes``. Run
        step by step, a thread's products read the transformed tiles that both threads
        made, and the output transform the products of both, passed between cores at
        every step: on 2 threads (an Intel Xeon) the layers of 16-192 channels of
        Oct-ResNet-50 alpha .75 took 0.66-0.90 x their time on one thread step by step,
        0.58-0.62 x in bands, and on one thread 0.82-1.05 x the time in bands as step by
        step; whole networks within the noise (results/NOTES.md, stop 52)."""
        return 4 * _volume(self.weight_shape) <= self.band_bytes

    def band_tiles(self):
        """The output tiles of one band of :meth:`_schedule_banded` (whole tile rows of
        an image, :func:`~octconv.deploy.kernels.row_parts` of them)."""
        _, _, height, width, _ = self.out_shape
        rows, cols = -(-height // self.m), -(-width // self.m)
        return rows // part_count(rows) * cols

    def tiles(self, lanes):
        """Tiles (pixel tiles, output blocks, input blocks per pass), best-guess first:
        register tiles of pixel tiles x output blocks whose accumulators fit the vector
        registers (24 of 32 zmm with AVX-512, 12 of 16 ymm with AVX2), each with the two
        most even input-channel passes. Step by step, 4 x 4 and 4 x 1 first (among the
        fastest on the layers of ResNet-50 on an AVX-512 Zen 4; the wider tiles are for
        CPUs with two full-width FMA units), and 2 x 7 before 4 x 1 where 7 divides the
        output blocks and 4 does not (alpha .125's 112 and 224 channels: a 224 -> 224
        channel layer on 14 px took 0.7-0.9 x the time of its 4 x 1 and 4 x 2 tiles by
        F(2x2) and F(4x4), weights flushed, 1 thread, a Zen 5); in bands, tiles of 4 or
        more pixel tiles that divide a band's first, the most accumulators first (a band
        of 7 tiles in tiles of 4 computes 8, the last under a condition: on one thread
        1.0-1.6 x the time of tiles of 7), then the others."""
        blocks, width = self.tile_blocks
        vectors = max(1, width // lanes)
        budget = 24 if lanes == 16 else 12
        icb = self.data[1]
        blocked = [d for d in (2, 4, 1) if icb % d == 0]
        shapes = [(4, 4), (2, 7), (4, 1), (4, 2), (8, 2), (2, 2), (6, 1), (3, 2), (8, 1),
                  (2, 1), (1, 1)]
        if self.banded:
            band = self.band_tiles()
            whole = sorted(((rp, ot) for rp in range(4, band + 1) if band % rp == 0
                            for ot in range(1, blocks + 1)),
                           key=lambda shape: (-shape[0] * shape[1], -shape[0]))
            shapes = whole + [shape for shape in shapes if shape not in whole]
        found = []
        for rp, ot in shapes:
            if rp * ot * vectors <= budget and blocks % ot == 0:
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
        blocks, width = self.tile_blocks
        product = te.compute((a, a, blocks, tiles, width), lambda e, u, oc, p, o: te.sum(
            v[e, u, icb, p, ic] * weight[e, u, oc, icb, ic, o], axis=[icb, ic]), name="gemm")

        def block_product(e, u, oc, p, o):  # output block oc's lanes of the products
            if self.paired:
                return product[e, u, oc // 2, p, oc % 2 * ob + o]
            return product[e, u, oc, p, o]

        at_rows = te.compute((m, a, ob_, tiles, ob), lambda r, u, oc, p, o: _select(
            r, [_combine(at[k], [block_product(e, u, oc, p, o) for e in range(a)])
                for k in range(m)]), name="at_rows")

        def cols(n, oc, y, x, o):
            p = n * th * tw + (y // m) * tw + x // m
            terms = [at_rows[y % m, u, oc, p, o] for u in range(a)]
            return _select(x % m, [_combine(at[k], terms) for k in range(m)])

        conv = te.compute(shape, cols, name="at_cols")
        extra, out = _with_epilogue(self.epilogue, conv, shape)
        return [data, weight] + extra, out

    def _prefetch_later_pass(self, sch, outer, po, tile):
        """Prefetch the weights (``ot`` output blocks x ``icin`` input blocks, in the
        order the products read them) of the pass :data:`PASSES_AHEAD` passes after this
        one in the order a thread runs them, across the ends of the chains of passes
        over one position's output blocks (``outer``: the loops e, u, oco and icbo),
        spread over this pass's groups of pixel tiles ``po``
        (:func:`~octconv.deploy.kernels.prefetch_ahead`). With their weights flushed
        from the caches before each call, as inside a network (1 thread, an Intel
        Xeon), a 512 -> 512 channel F(2x2) layer on a 7 px map took 1.50 ms with the
        next pass prefetched instead of 1.88 (1.00 instead of 1.11 in cache), a 256 ->
        256 channel F(4x4) layer on 14 px 0.93 instead of 1.11; prefetched one output
        block after another, instead of as read, the first took 1.84 (stop 50). Two
        passes ahead and across chains instead of the next pass within a chain (1
        thread, a Zen 5, flushed, tiles of 4 x 4 x 2, over several runs): a 192 -> 256
        channel layer on 7 px (chains of 6 passes) took 0.129-0.139 ms instead of
        0.170-0.173 (one pass ahead across chains 0.147-0.158), a 64 -> 192 one (chains
        of 2) 0.038-0.040 instead of 0.053, the 512 -> 512 one (chains of 16) 0.61-0.67
        instead of 0.71-0.73 (one ahead 0.69); in cache the same (results/NOTES.md, stop
        60)."""
        rp, ot, icin = tile
        e, u, oco, icbo = [sch.get(loop).loop_var for loop in outer]
        a, groups, passes = [int(sch.get(loop).extent) for loop in outer[1:]]
        count = a * a * groups * passes
        ahead = tirx.min(((e * a + u) * groups + oco) * passes + icbo + PASSES_AHEAD, count - 1)
        e, u, oco, icbo = (ahead // (passes * groups * a), ahead // (passes * groups) % a,
                           ahead // passes % groups, ahead % passes)
        weight = weight_buffer(sch, "gemm")

        def row(r):
            return tirx.BufferLoad(weight, [e, u, *self._weight_row(
                r, oco * ot, icbo * icin, ot), 0])

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
        return (tirx.min(first_block + r % blocks, self.tile_blocks[0] - 1),
                tirx.min(first_in + channel // ib, self.data[1] - 1), channel % ib)

    def schedule(self, sch, tile):
        if self.banded:
            self._schedule_banded(sch, tile)
        else:
            self._schedule_steps(sch, tile)

    def _schedule_products(self, sch, loops, tile):
        """Register-tile the products ``loops`` (e, u, oc, p, o, icb, ic) like a 1x1
        convolution, prefetching a later pass's weights; returns the loops outside the
        pixel tiles: (e, u, groups of output blocks, passes over input blocks)."""
        rp, ot, icin = tile
        e, u, oc, p, o, icb, ic = loops
        oco, oci = sch.split(oc, [None, ot])
        po, pi = sch.split(p, [None, rp])
        icbo, icbi = sch.split(icb, [None, icin])
        sch.reorder(e, u, oco, icbo, po, icbi, ic, oci, pi, o)
        sch.vectorize(o)
        sch.unroll(oci)
        sch.unroll(pi)
        self._prefetch_later_pass(sch, (e, u, oco, icbo), po, tile)
        return e, u, oco, icbo

    def _schedule_output_transform(self, sch):
        """The output transform and epilogue per m x m output tile, in bands of tile
        rows; returns the loops (images, bands, output blocks) outside the tiles."""
        m = self.m
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
        return n, part, oc

    def _schedule_input_transform(self, sch, outer, p):
        """The input transform, one a x a x lanes tile per (input block, pixel tile
        ``p``), its loops ordered (input block, pixel tile, e, u, lane) under ``outer``
        others."""
        sch.compute_at(sch.get_sblock("bt_rows"), p)
        for block in ("bt_rows", "bt_cols"):
            loops = sch.get_loops(sch.get_sblock(block))
            sch.vectorize(loops[-1])
            for loop in loops[outer + 2:-1]:
                sch.unroll(loop)

    def _schedule_banded(self, sch, tile):
        """One parallel loop over bands of output tile rows (images x :func:`row_parts`
        of their tile rows); in each, the input transform of the band's tiles (reading
        the input's rows, their zero padding computed in place), the products of all
        transformed positions and output blocks, then the output transform and
        epilogue."""
        n, part, _ = self._schedule_output_transform(sch)
        gemm = sch.get_sblock("gemm")
        sch.compute_at(gemm, part, preserve_unit_loops=True)
        icbo = self._schedule_products(sch, sch.get_loops(gemm)[2:], tile)[3]
        cols = sch.get_sblock("bt_cols")
        sch.compute_at(cols, part, preserve_unit_loops=True)
        e, u, c, p, i = sch.get_loops(cols)[2:]
        sch.reorder(c, p, e, u, i)
        self._schedule_input_transform(sch, 2, p)
        pad = _padding_block(sch)
        if pad is not None:  # (none where the input needs no padding)
            sch.compute_inline(pad)
        _parallel(sch, n, part)
        sch.decompose_reduction(gemm, icbo)

    def _schedule_steps(self, sch, tile):
        """Each step over the whole map in a parallel loop of its own: the padded copy
        of the input, the input transform (bands of pixel tiles x input blocks), the
        products (transformed positions x output blocks), the output transform and
        epilogue (bands of tile rows x output blocks)."""
        e, u, c, p, i = sch.get_loops(sch.get_sblock("bt_cols"))
        part, p = row_parts(sch, p)
        sch.reorder(part, c, p, e, u, i)
        self._schedule_input_transform(sch, 1, p)
        _parallel(sch, part, c)
        gemm = sch.get_sblock("gemm")
        e, u, oco, icbo = self._schedule_products(sch, sch.get_loops(gemm), tile)
        _parallel(sch, e, u, oco)
        sch.decompose_reduction(gemm, icbo)
        _parallel(sch, *self._schedule_output_transform(sch))
        _schedule_padding(sch)
