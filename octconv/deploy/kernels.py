"""The compute kernels of a compiled network, in TVM TE, on channel-blocked tensors.

Every activation is stored ``N x C/cb x H x W x cb`` (NCHW[cb]c, see :class:`Layout`),
so the innermost axis of every kernel is a vector of ``cb`` channels. A kernel is a
frozen dataclass derived from :class:`Kernel`: its fields are the whole workload
(shapes, strides, fused epilogue), ``key()`` names it, ``workload()`` is the kernel
whose timing decides its tile (batch 1 unless its data outgrow the cache, no epilogue
inputs, so that batched calls and other epilogues share one search), ``tiles(lanes)``
lists its candidate tiles best-guess first, ``compute()`` returns the TE tensors
``(inputs, output)``, ``compute_for(tile)`` those that ``schedule(sch, tile)`` schedules
into its PrimFunc (the same, unless a tile needs the computation in another form: a
1x1 convolution's padded pixels). Every schedule makes its outermost loop parallel
(the thread count is chosen when the network runs), over bands of output rows first
and channel blocks within a band (:func:`row_parts`), so that on several threads each
computes the rows whose inputs it computed before; where a map has more channels than
pixels, or a convolution's weights outweigh its input map, over channel blocks first
(:func:`split_order`, :attr:`Conv.bands_first`). Convolutions prefetch the weights they
read next while they compute with the current ones (:func:`prefetch_ahead`): inside a
network, where the weights of a call come from memory (a ResNet-50 reads 100-150 MB of
them per call), a kernel would otherwise wait for each block of them in turn.

Fused epilogues (:class:`Epilogue`) follow a convolution or start a point-wise kernel:
a sequence of per-channel affine steps (folded or unfolded BatchNorm, conv bias), adds
of another tensor (read directly, or nearest-2x-upsampled and cropped, which is
OctConv's low-to-high path; from its first channel block or a later one, when it holds
the outputs of several convolutions side by side), channel gates (squeeze-excitation)
and activations (relu, relu6, sigmoid), applied in the order of the source graph.
"""
from dataclasses import dataclass, replace
from typing import NamedTuple

from tvm import te, tirx

__all__ = ["ConvTile", "DepthwiseTile", "Kernel", "Layout", "Epilogue", "Conv", "Depthwise",
           "Pointwise", "Pool", "GlobalPool", "weight_bound",
           "Upsample", "Concat", "Dense", "Flatten", "PackInput", "vectorize_inner"]

F32 = "float32"

# the input and output bytes of a call up to which a kernel is tuned at batch 1 (in
# cache), beyond which at its own batch (through memory): half of a 32 MB L3
CACHED_BYTES = 16 << 20
# the L1 data cache a wide tile's weights must fit (AMD Zen's; Intel's are 32-48 KB)
L1_BYTES = 32 << 10
# the guessed cost, as a fraction of a tile's work, of a 1x1 convolution's tile that pads
# the map's flat pixels (their results pass through memory to the epilogue: guessed
# slower than a whole-row tile within the budget), and of one that holds a single pixel
# (each weight it loads serves one pixel); see Conv.register_tiles
PADDED_TILE_COST = 0.4
ONE_PIXEL_TILE_COST = 0.5
# a 1x1 convolution whose weights outweigh its input on a map of at most this many pixels
# (7 x 7, 8 x 8) counts a register tile as full from this many accumulators (else two
# thirds of the budget) and is offered no input-channel blocking (Conv.streams_weights)
SMALL_MAP_PIXELS = 64
STREAMING_ACCUMULATORS = 10
# the fewest vector multiply-adds a kernel does per row of weights it prefetches: one
# 64-byte row per 12 multiply-adds (6 cycles at two a cycle) is 27 GB/s at 2.6 GHz,
# twice what one core read from memory on an Intel Xeon (see prefetch_ahead)
FMAS_PER_PREFETCH = 12
# bands of rows a kernel's parallel loop is cut into (see row_parts): 8 keep each of up
# to 8 threads on its own rows
ROW_PARTS = 8


class ConvTile(NamedTuple):
    """How a convolution is scheduled. Searched: a register tile of ``rows`` x ``cols``
    output pixels x ``out_blocks`` channel blocks, and ``in_blocks`` input-channel blocks
    reduced per pass over it (all of a group's blocks: the reduction innermost). Not
    searched: whether the loop over a block's input channels around the tile's
    multiply-adds is ``unrolled``, which :meth:`Conv.tiles` sets for 16-lane vectors
    (AVX-512). There, on an Intel Xeon, the loop of 16 left a 384 -> 384 channel 1x1
    convolution on a 14 px map at 71 G multiply-adds/s (0.72 x what one core's two FMA
    units give at its clock); unrolled, the ResNet-50s and MobileNets ran 0.4-5 % faster
    side by side on the same tiles, while AVX2 code ran 0.5-3 % slower."""
    rows: int
    cols: int
    out_blocks: int
    in_blocks: int
    unrolled: bool = False


class DepthwiseTile(NamedTuple):
    """The knobs of a depthwise convolution: a chunk of ``rows`` output rows shares one
    padded copy of the input rows it reads; output ``cols`` per inner loop."""
    rows: int
    cols: int


@dataclass(frozen=True)
class Layout:
    """Storage of ``channels`` channels: blocks of ``block``, zero-padded to ``padded``."""
    channels: int
    block: int

    @property
    def padded(self):
        return -(-self.channels // self.block) * self.block

    @property
    def blocks(self):
        return self.padded // self.block

    @staticmethod
    def for_channels(channels, lanes):
        """16-channel blocks when the channels fill them; else 8-channel blocks when
        they pad less than 16-channel ones (none for OctConv's 56 + 8 split at alpha
        .125; Oct-MobileNet v1 0.75's alpha .375 branches of 18 and 36 channels take 24
        and 40 instead of 32 and 48, those of 72 and 120 none instead of 80 and 128);
        else blocks of ``lanes`` (8 on AVX2, 16 on AVX-512) zero-padded to a whole
        block. With 16 lanes a convolution writing 8-channel blocks computes two in each
        16-lane accumulator (:attr:`Conv.paired`; an odd count where measured faster),
        so padding a count to whole 16-channel blocks buys no wider arithmetic, and its
        readers would reduce over the padding too. On an AMD Zen 4 (1 thread, side by
        side with the rule before, which padded counts within 1/8 of a whole 16-channel
        block to it: 72 -> 80, 120 -> 128) Oct-MobileNet v1 0.75 alpha .375 ran in
        0.979 x the time, v2 1.125 alpha .5 in 0.975 x, v2 1.0 alpha .375 in 0.990 x,
        their twins in 0.99-1.01 x (results/NOTES.md, stop 63); not measured on
        full-width AVX-512 units."""
        if channels % 16 == 0:
            return Layout(channels, 16)
        if -channels % 8 < -channels % 16:
            return Layout(channels, 8)
        return Layout(channels, lanes)


@dataclass(frozen=True)
class Kernel:
    """What every kernel offers; subclasses add the workload's fields."""

    def key(self):
        return repr(self)

    def workload(self):
        """The kernel timed to choose this one's tile: a kernel with an epilogue is
        timed with the bias step alone, at batch 1 while its input and output fit in
        :data:`CACHED_BYTES`, else at its own batch. A map that streams through memory
        wants other tiles than one in cache: MobileNet v2's 16 -> 96 expansion at 112
        px ran 1.45 x faster with 2 pixels x 6 output blocks per tile than with 16
        pixels x 1 block at batch 1, and 1.6 x slower at batch 8 (38 MB of output)."""
        if not hasattr(self, "epilogue"):
            return self
        data = tuple(self.data)
        if (not self.images_in_tile and
                4 * (_volume(data) + _volume(getattr(self, "out_shape", data))) <= CACHED_BYTES):
            data = (1,) + data[1:]
        return replace(self, data=data, epilogue=Epilogue((("bias",),)))

    @property
    def in_size(self):
        """The rows and columns of the map the kernel's computation reads: ``data``'s,
        halved rounding up where the kernel average-pools it 2x2/2 as it reads
        (``pooled``: :class:`Conv`, :class:`Depthwise`)."""
        _, _, h, w, _ = self.data
        return (-(-h // 2), -(-w // 2)) if getattr(self, "pooled", False) else (h, w)

    @property
    def images_in_tile(self):
        """Whether a register tile spans several images of the batch (each weight it
        loads serves all of them), so that the batch is part of the workload."""
        return False

    def tiles(self, lanes):
        """Candidate tiles, best guess first; ``[None]``: nothing to choose."""
        return [None]

    def compute_for(self, tile):
        """The TE tensors ``(inputs, output)`` that :meth:`schedule` schedules with
        ``tile``: those of ``compute()``, unless the tile needs the computation in
        another form (the same inputs and output)."""
        return self.compute()

    @property
    def macs(self):
        """Multiply-adds of one call as the direct computation counts them (padded
        output channels, input channels a convolution reduces over in full blocks and
        the zeros of block-diagonal grouped weights included); 0 for kernels that only
        move, pool or scale data."""
        return 0


def _volume(shape):
    volume = 1
    for d in shape:
        volume *= int(d)
    return volume


def _zero():
    return tirx.const(0.0, F32)


# ----------------------------------------------------------------------------- epilogue

@dataclass(frozen=True)
class Epilogue:
    """Steps applied to a value at (n, block, y, x, lane). Each step is a tuple:
    ``("affine",)`` (per-channel scale and shift inputs), ``("bias",)`` (per-channel
    shift), ``("add", shape, "direct"|"up2", offset)`` (another tensor of ``shape``,
    read at the same position or at (y // 2, x // 2), and at channel block ``b +
    offset``), ``("gate", shape)`` (multiply by an N x B x 1 x 1
    x cb tensor), ``("act", "relu"|"relu6"|"sigmoid")``."""
    steps: tuple = ()

    def placeholders(self, blocks, block):
        """The TE inputs the steps read, in step order."""
        inputs = []
        for i, step in enumerate(self.steps):
            if step[0] == "affine":
                inputs += [te.placeholder((blocks, block), F32, f"scale{i}"),
                           te.placeholder((blocks, block), F32, f"shift{i}")]
            elif step[0] == "bias":
                inputs.append(te.placeholder((blocks, block), F32, f"shift{i}"))
            elif step[0] in ("add", "gate"):
                inputs.append(te.placeholder(step[1], F32, f"other{i}"))
        return inputs

    def apply(self, value, inputs, n, b, y, x, i):
        """The TE expression of the steps applied to ``value`` at (n, b, y, x, i)."""
        feed = iter(inputs)
        for step in self.steps:
            kind = step[0]
            if kind == "affine":
                scale, shift = next(feed), next(feed)
                value = value * scale[b, i] + shift[b, i]
            elif kind == "bias":
                value = value + next(feed)[b, i]
            elif kind == "add":
                other, block = next(feed), b + step[3]
                value = value + (other[n, block, y, x, i] if step[2] == "direct"
                                 else other[n, block, y // 2, x // 2, i])
            elif kind == "gate":
                value = value * next(feed)[n, b, 0, 0, i]
            elif step[1] == "relu":
                value = te.max(value, _zero())
            elif step[1] == "relu6":
                value = te.min(te.max(value, _zero()), tirx.const(6.0, F32))
            else:
                value = te.sigmoid(value)
        return value


def vectorize_inner(sch, block):
    """Vectorize a block's innermost (channel-lane) loop and run the others in parallel:
    on an N x blocks x H x W x lanes tensor, bands of rows (:func:`row_parts`) and
    channel blocks in the order :func:`split_order` gives for the block's map; on other
    shapes all outer loops fused."""
    loops = sch.get_loops(block)
    if len(loops) == 5:
        n, b, y, x, _ = loops
        shape = [int(sch.get(loop).extent) for loop in loops]
        part, rest = row_parts(sch, y)
        outer = split_order(n, part, b, shape)
        sch.reorder(*outer, rest, x)
        _parallel(sch, *outer)
    elif len(loops) > 1:
        _parallel(sch, *loops[:-1])
    sch.vectorize(loops[-1])


def split_order(images, rows, blocks, shape):
    """The loops of a kernel's parallel loop, outermost first, for a kernel that reads
    (or writes) the N x B x H x W x cb map ``shape`` channel by channel (pools,
    depthwise and point-wise kernels): the images, then bands of rows before channel
    blocks where the map has at least as many pixels as channels, else channel blocks
    first. The 1x1 convolution that makes such a map (C channels of H x W pixels) splits
    by rows exactly when H x W >= C (:attr:`Conv.bands_first`: its input map of C' x H
    x W outweighs its C' x C weights), so each thread reads the channels or rows it
    computed before. Split by rows after a convolution split by blocks, Oct-MobileNet
    v1 0.75's 14 -> 7 px poolings took 0.080 ms on 2 threads against 0.042 on one;
    split so, its kernels took 0.96 x the time on 2 threads, ResNet-50's point-wise
    kernels on 14 and 7 px maps 0.65 x."""
    _, b, h, w, cb = shape
    return [images, rows, blocks] if h * w >= b * cb else [images, blocks, rows]


def prefetch_ahead(sch, at, tiles, rows, element, work):
    """Prefetch the cache lines of ``rows`` rows of a buffer (``element(r)``: a
    ``BufferLoad`` of row ``r``'s first element, in terms of the loop variables), spread
    evenly over the iterations of loop ``at`` in the ``tiles`` loops (outermost first)
    around it: each iteration starts with its share, a few requests in a serial loop, so
    that the rows arrive while those iterations compute instead of when a later loop
    first reads them. For a kernel's weights read from memory once per call (inside a
    network), the rows its next pass or next output blocks read. The row number is
    clamped to the last row (its line then fetched again).

    Put at a loop around a register tile's reduction loops, not inside them: there, the
    prefetch intrinsic kept LLVM from holding the accumulators in registers (1.6 x
    slower). Not where the rows come faster than one core reads memory, fewer than
    :data:`FMAS_PER_PREFETCH` vector multiply-adds (``work`` per iteration of ``at``)
    a row: there the kernel waits for memory either way, and the requests only add
    work (a 2048 -> 512 channel 1x1 convolution on 7 px, 8 input blocks a pass, one
    row per 7: 0.74 ms instead of 0.67 in cache, 0.84 instead of 0.80 flushed)."""
    def var(loop):
        return sch.get(loop).loop_var

    iterations = int(sch.get(at).extent)
    index, count = tirx.const(0, "int32"), 1
    for loop in tiles:
        extent = int(sch.get(loop).extent)
        index, count = index * extent + var(loop), count * extent
    share = -(-rows // (count * iterations))
    if share * FMAS_PER_PREFETCH > work:
        return
    first = (index * iterations + var(at)) * share
    j = tirx.Var("row", "int32")
    fetch = tirx.Evaluate(tirx.call_llvm_intrin(
        "void", "llvm.prefetch.p0",
        tirx.address_of(element(tirx.min(first + j, tirx.const(rows - 1, "int32")))),
        tirx.const(0, "int32"), tirx.const(3, "int32"), tirx.const(1, "int32")))
    old = sch.get(at)
    body = tirx.SeqStmt([tirx.For(j, 0, share, tirx.ForKind.SERIAL, fetch), old.body])
    sch.state.replace(sch.get_sref(at), tirx.For(old.loop_var, old.min, old.extent,
                                                 old.kind, body, old.thread_binding,
                                                 old.annotations))


def block_pairs(blocks, block, paired):
    """(blocks, channels of each) of ``blocks`` output blocks of ``block`` channels:
    with ``paired``, pairs of blocks of twice the channels (an odd last block with a
    dropped partner)."""
    return (-(-blocks // 2), 2 * block) if paired else (blocks, block)


def weight_buffer(sch, block):
    """The "weight" input that ``block`` reads."""
    return next(region.source for region in sch.get(sch.get_sblock(block)).reads
                if region.source.name == "weight")


def weight_bound(kernel, weight_shape=None):
    """Whether ``kernel``'s weights (or weights of ``weight_shape``, a form it may take)
    outweigh an image of its input. Inside a network such a kernel reads its weights
    from memory (or L3) once per call while its input comes from the kernel before it,
    in cache. A convolution so splits its output blocks among threads (not
    :attr:`Conv.bands_first`), and the tile search times its candidates with their
    weights flushed (:mod:`octconv.deploy.tuning`), not again and again on weights in
    cache, where tiles that cannot prefetch their weights win: Oct-ResNet-50 alpha .75's
    192 -> 256 channel 3x3 convolution on 7 px (1 thread, an Intel Xeon), 7 pixels x 2
    output blocks in passes of 4 input blocks, took 0.295 ms in cache and 0.364 flushed,
    the same tile with the reduction innermost (which prefetches) 0.305 and 0.331; with
    the eight such layers' tiles so, the network took 0.93 x the time."""
    shape = weight_shape or getattr(kernel, "weight_shape", None)
    return shape is not None and _volume(shape) > _volume(kernel.data[1:])


def _parallel(sch, *loops):
    """Fuse the outer ``loops`` into one parallel loop."""
    sch.parallel(sch.fuse(*loops) if len(loops) > 1 else loops[0])


def row_parts(sch, rows, whole=lambda extent: True):
    """Split ``rows`` (a loop over output rows, or over tiles in row order) into about
    :data:`ROW_PARTS` equal parts (those ``whole`` accepts the size of) and the rows of
    a part: ``(parts, rest)``. A kernel's parallel loop puts the parts outside the
    channel blocks, so that a thread, which runs a contiguous range of the parallel
    loop, computes all channels of a band of rows: the band whose rows it computed in
    the kernel before, in its own core's cache. Split by channel blocks instead, each
    kernel read half its input from the other core (2 threads: 0.94-0.98 x the time of
    the MobileNets with row bands, 0.89-0.95 x that of the MobileNet v2 and ResNet-50
    pairs at batch 8)."""
    return sch.split(rows, [part_count(int(sch.get(rows).extent), whole), None])


def part_count(extent, whole=lambda extent: True):
    """How many parts :func:`row_parts` cuts a loop of ``extent`` iterations into."""
    return min((d for d in range(1, extent + 1) if extent % d == 0 and whole(extent // d)),
               key=lambda d: (abs(d - ROW_PARTS), -d))


def _accumulators(block, lanes):
    """(vectors per output block of ``block`` channels, accumulator vectors a register
    tile may hold: 12 of 16 ymm on AVX2, 24 of 32 zmm on AVX-512)."""
    return max(1, block // lanes), (24 if lanes == 16 else 12)


def _pad(data, out_shape, kernel, stride, pad, value):
    """``data`` (N, B, H, W, cb) with ``pad`` rows and columns of ``value`` around it,
    and more at the bottom and right if the windows of ``out_shape`` reach further
    (ceil-mode pooling). Unpadded data is returned as is."""
    n_, b_, h, w, c_ = (int(d) for d in data.shape)
    height = max(h + 2 * pad, (out_shape[2] - 1) * stride + kernel)
    width = max(w + 2 * pad, (out_shape[3] - 1) * stride + kernel)
    if (pad, height, width) == (0, h, w):
        return data
    return te.compute(
        (n_, b_, height, width, c_),
        lambda n, b, y, x, i: tirx.if_then_else(
            tirx.all(y >= pad, y < pad + h, x >= pad, x < pad + w),
            data[n, b, y - pad, x - pad, i], tirx.const(value, F32)),
        name="pad")


def _with_epilogue(epilogue, value, shape):
    """``(epilogue inputs, output tensor)``: ``epilogue`` applied to ``value`` (a tensor
    of ``shape`` (N, B, H, W, cb), or a function of (n, b, y, x, i) giving the value
    there)."""
    at = (lambda *index: value[index]) if isinstance(value, te.Tensor) else value
    extra = epilogue.placeholders(shape[1], shape[4])
    out = te.compute(shape, lambda n, b, y, x, i: epilogue.apply(
        at(n, b, y, x, i), extra, n, b, y, x, i), name="epilogue")
    return extra, out


def _out_size(size, kernel, stride, pad, ceil=False):
    span = size + 2 * pad - kernel
    return (-(-span // stride) if ceil else span // stride) + 1


# ----------------------------------------------------------------------------- convolution

@dataclass(frozen=True)
class Conv(Kernel):
    """Convolution of an NCHW[ib]c tensor with packed weights (OB, ICB, KH, KW, ib, ob),
    ``groups`` block groups (each output block reads the ICB input blocks of its group),
    then the epilogue. Spatial padding is materialized once (zeros), outside the tile.
    With ``pooled`` (a 1x1 stride-1 convolution whose threads split bands of rows,
    :attr:`bands_first`), of ``data`` average-pooled 2x2/2 first as :class:`Depthwise`
    ``pooled`` (OctConv's h2l path, :mod:`octconv.unit`): each band's pooled pixels made
    once, before its output blocks (then a serial loop) read them; no pooled map stored.
    With ``paired`` (8-channel output blocks on 16-lane vectors, one block group), two
    output blocks share each 16-lane accumulator: weights packed by pairs of blocks
    (:attr:`weight_shape`), products in an N x pairs x H x W x 2 x ob map whose last two
    loops are one vector, the epilogue writing each block's half to its block (an odd
    last block pairs with a dropped one of zero weights). With ``in_channels`` (one
    block group, fewer channels than the input's blocks hold), the reduction reads
    those channels only, not the zero padding lanes of the last input block (the
    schedule splits the channels into blocks and lanes; the lanes past them are
    skipped under a condition): on a Zen 4 core (1 thread, each with its best tile)
    Oct-MobileNet v1 0.75 alpha .375's 1x1 convolutions of 18 channels in 3 blocks of
    8 took 0.76 x their time, of 36 in 5 blocks of 8 0.89-0.95 x, of 30 and 60 in
    16-channel blocks 0.84-0.96 x; MobileNet v2 1.125 at alpha 0 and .5, 5.5-5.7 % of
    whose multiply-adds fell on such lanes, ran in 0.92-0.96 x the time
    (results/NOTES.md, stop 65)."""
    data: tuple          # (N, IB, H, W, ib)
    out_blocks: int
    out_block: int
    in_blocks_per_group: int
    groups: int
    kernel: int
    stride: int
    pad: int
    epilogue: Epilogue
    pooled: bool = False
    paired: bool = False
    in_channels: int | None = None

    def __post_init__(self):
        assert not self.pooled or (self.pointwise and self.bands_first), \
            "only a 1x1 stride-1 convolution split in bands pools"
        assert not self.paired or self.groups == 1, "only one block group pairs its blocks"
        assert self.in_channels is None or (
            self.groups == 1 and 0 < self.data[1] * self.data[4] - self.in_channels
            < self.data[4]), "only one block group skips padding lanes of its last block"

    def pairs_on(self, lanes):
        """Whether with ``lanes``-wide vectors this convolution may be :attr:`paired`:
        its output blocks are half a vector wide, it has more than one of them and one
        block group, and, if it pools as it reads, it still splits bands first with the
        pairs' weights (an odd count of blocks pairs its last with a dropped one of zero
        weights, so they can outweigh the input where the unpaired ones did not). Where
        an even count may pair, it does; whether an odd count does is measured
        (:func:`~octconv.deploy.algorithms.pairings`).
        Oct-MobileNet v1 0.75 alpha .375's h2l convolutions that pool 112 and 56 px maps
        of 8-channel blocks took 0.81, 0.61 and 0.67 x their time paired (1 thread, a
        Zen 5)."""
        if not (2 * self.out_block == lanes and self.out_blocks > 1 and self.groups == 1):
            return False
        return not self.pooled or not weight_bound(self, self._weight_shape(paired=True))

    def _blocks(self, paired):
        """(output blocks of a group, channels of each) as register tiles and weights
        count them (:func:`block_pairs`)."""
        return block_pairs(self.out_blocks // self.groups, self.out_block, paired)

    @property
    def tile_blocks(self):
        """:meth:`_blocks` of this convolution (:attr:`paired` or not)."""
        return self._blocks(self.paired)

    @property
    def out_shape(self):
        n = self.data[0]
        h, w = self.in_size
        oh = _out_size(h, self.kernel, self.stride, self.pad)
        ow = _out_size(w, self.kernel, self.stride, self.pad)
        return (n, self.out_blocks, oh, ow, self.out_block)

    @property
    def weight_shape(self):
        return self._weight_shape(self.paired)

    def _weight_shape(self, paired):
        blocks, block = self._blocks(paired)
        return (blocks * self.groups, self.in_blocks_per_group, self.kernel, self.kernel,
                self.data[4], block)

    @property
    def macs(self):
        channels = self.in_channels or self.in_blocks_per_group * self.data[4]
        return _volume(self.out_shape) * channels * self.kernel ** 2

    def compute(self):
        return self._compute(None)

    def compute_for(self, tile):
        return self._compute(self._padded_pixels(tile))

    def _compute(self, pixels):
        """The convolution over the output map, or for a 1x1 convolution with ``pixels``
        (not None) over each image's flat pixels padded to ``pixels`` (the padding
        recomputes the map's last pixel, its results unused), then the epilogue."""
        ib, s = self.data[4], self.stride
        data, weight, shape, padded, kh, kw = _window_operands(self)
        per_group = self.out_blocks // self.groups
        if self.in_channels is None:
            icb = te.reduce_axis((0, self.in_blocks_per_group), "icb")
            ic = te.reduce_axis((0, ib), "ic")
            axes = [icb, kh, kw, ic]
        else:  # one axis over the channels: the schedule splits it into blocks and lanes
            c = te.reduce_axis((0, self.in_channels), "c")
            icb, ic, axes = c // ib, c % ib, [c, kh, kw]

        def source_block(oc):
            return icb if self.groups == 1 else (oc // per_group) * self.in_blocks_per_group + icb

        def window_sum(n, oc, y, x, o):
            return te.sum(padded[n, source_block(oc), y * s + kh, x * s + kw, ic]
                          * weight[oc, icb, kh, kw, ic, o], axis=axes)

        if pixels is None:
            pixel_shape = shape[2:4]
            at = window_sum
        else:
            width, last = shape[3], shape[2] * shape[3] - 1
            pixel_shape = (pixels,)
            at = lambda n, oc, q, o: window_sum(n, oc, te.min(q, last) // width,
                                                te.min(q, last) % width, o)
        blocks, ob = self.weight_shape[0], self.out_block
        if self.paired:  # a pair's (half, lane): its weights' lane half * ob + lane
            conv = te.compute((shape[0], blocks) + pixel_shape + (2, ob), lambda *i: at(
                *i[:-2], i[-2] * ob + i[-1]), name="conv")
        else:
            conv = te.compute((shape[0], blocks) + pixel_shape + (ob,), at, name="conv")

        def product(n, b, y, x, i):
            pixel = (y, x) if pixels is None else (y * width + x,)
            lane = (b % 2, i) if self.paired else (i,)
            return conv[(n, b // 2 if self.paired else b) + pixel + lane]

        extra, out = _with_epilogue(self.epilogue, product, shape)
        return [data, weight] + extra, out

    @property
    def pointwise(self):
        """A 1x1 stride-1 convolution: its pixels are tiled as one flat axis."""
        return self.kernel == 1 and self.stride == 1 and self.pad == 0

    @property
    def images_in_tile(self):
        """A 1x1 convolution of a batch of 1x1 maps (a classifier or a gate after global
        pooling): the images are its flat pixels, so that a tile of several images reads
        each weight once for all of them instead of once per image."""
        h, w = self.in_size
        return self.pointwise and h == w == 1 and self.data[0] > 1

    @property
    def bands_first(self):
        """Whether threads split the map into bands of rows (each reads all weights and
        its band of the input), not the output blocks (each reads its blocks' weights
        and all of the input): when an image's input outweighs the weights. With bands
        also where the weights outweigh the maps (ResNet-50's 7 and 14 px layers), each
        band read every weight again from L3 or memory: ResNet-50 and Oct-ResNet-50 ran
        1.08-1.2 x slower on 1 and 2 threads."""
        return not weight_bound(self)

    def _may_pad(self, pixels, blocks):
        """Whether a tile of ``pixels`` flat pixels x ``blocks`` output blocks may pad
        this 1x1 convolution's pixels (:meth:`_padded_pixels`): where the convolution
        splits its output blocks among threads first (not :attr:`bands_first`), so that
        the epilogue's pass, split likewise, reads what its own thread computed (not
        with the images in a tile), and the parallel loop (images x tiles of blocks x
        parts of the padded pixels) keeps :data:`ROW_PARTS` iterations."""
        if not self.pointwise or self.images_in_tile or self.bands_first:
            return False
        parts = part_count(-(-self._flat_pixels() // pixels))
        return self.data[0] * (self.weight_shape[0] // blocks) * parts >= ROW_PARTS

    def _padded_pixels(self, tile):
        """The flat pixels of each image that a 1x1 convolution computes with ``tile``
        when the tile's pixels do not fit its map (:meth:`_flat_tile_fits`): the map's,
        rounded up to whole tiles; None when they fit."""
        if not self.pointwise or self._flat_tile_fits(tile[1]):
            return None
        return -(-self._flat_pixels() // tile[1]) * tile[1]

    @property
    def streams_weights(self):
        """A 1x1 convolution on a map of at most :data:`SMALL_MAP_PIXELS` pixels whose
        weights outweigh its input (ResNet-50's last stage, Oct-ResNet-50's 7 px low
        maps): its weights stream from memory through tiles of few pixels. Its register
        tiles count as full from :data:`STREAMING_ACCUMULATORS` accumulators, and its
        candidates include no input-channel blocking, so that the search tries padded
        tiles of 5 pixels: on the Zen 5, flushed, 1 thread, 5 pixels x 2 blocks ran
        ResNet-50's 7 px layers in 0.86-0.91 x the time of the best 7-pixel tile (2048
        -> 512, 512 -> 2048, 768 -> 256 and 768 -> 192 channels; 192 -> 1024 0.91 x, 3
        pixels x 4 blocks the same), but 64 -> 768 1.12 x, where the search keeps 7
        pixels; Oct-ResNet-50 alpha .75 ran in 0.92-0.98 x the time. Of the 174 1x1
        layers of any map whose weights outweigh their input searched for stop 60's
        tables (AVX-512 and AVX2), a blocked tile won once (results/NOTES.md, stop
        60)."""
        return (self.pointwise and not self.images_in_tile and self.data[0] == 1
                and weight_bound(self) and self._flat_pixels() <= SMALL_MAP_PIXELS)

    def _flat_pixels(self):
        """The flat pixel axis of a 1x1 convolution: a map's pixels, or the images."""
        n, _, oh, ow, _ = self.out_shape
        return n if self.images_in_tile else oh * ow

    def register_tiles(self, lanes):
        """Register tiles (rows, cols, output blocks) whose accumulators fit in the
        vector registers (12 of 16 ymm on AVX2, 24 of 32 zmm on AVX-512), best-guess
        first: no ragged edge (a partial tile costs more than its share), then about
        8-12 accumulators (20-24 with AVX-512; 10 or more where the convolution
        :attr:`streams_weights`). A 1x1 stride-1 convolution tiles flat
        pixels (rows is 1, cols counts pixels): whole rows or a divisor of a row, or,
        where it :meth:`_may_pad` the pixels, any count (guessed slower than a tile of
        whole rows: :data:`PADDED_TILE_COST`); there a tile of one pixel, which loads each weight
        for that pixel alone, comes after those of several (:data:`ONE_PIXEL_TILE_COST`).
        On 7 px maps with AVX2 code, where 16-channel blocks take two registers each and
        no whole row fits the budget, padded tiles of 2 to 6 pixels ran a 2048 -> 512
        channel layer in 0.96-1.05 ms against 1.33 for the best one-pixel tile (a Zen 4
        core); Oct-ResNet-50 alpha .75 ran 11 % faster, ResNet-50 7 %. With AVX-512
        code the whole rows fit and stay ahead: there 7 pixels x 1 or 2 blocks ran the
        same layer in 0.88-0.90 ms, padded tiles of 5 or 10 pixels in 0.91-0.96 (on
        the Zen 5, flushed, 5 pixels x 2 blocks 0.91 x the time of 7 pixels x 1 block,
        which :attr:`streams_weights` lets the search try)."""
        _, _, oh, ow, _ = self.out_shape
        per_group, block = self.tile_blocks
        vectors, budget = _accumulators(block, lanes)
        rows, cols = (1, self._flat_pixels()) if self.pointwise else (oh, ow)
        enough = budget * 2 // 3  # accumulators of a full tile
        if self.streams_weights:
            enough = min(enough, STREAMING_ACCUMULATORS)
        found = []
        for ot in (1, 2, 4):
            if per_group % ot:
                continue
            for rh in ((1,) if self.pointwise else (1, 2, 4)):
                for rw in range(1, 17):
                    count = rh * rw * ot * vectors
                    if rh > rows or rw > cols or count > budget:
                        continue
                    padded = self.pointwise and not self._flat_tile_fits(rw)
                    if padded and not self._may_pad(rw, ot):
                        continue
                    waste = (-(-rows // rh) * rh * -(-cols // rw) * rw) / (rows * cols) - 1
                    ragged = PADDED_TILE_COST if padded else (1.0 if waste else 0.0)
                    lone = ONE_PIXEL_TILE_COST if self.pointwise and rw == 1 < cols else 0.0
                    short = max(0, enough - count) / budget
                    found.append((ragged + lone + waste + short, (rh, rw, ot)))
        return [tile for _, tile in sorted(found)]

    def wide_tile(self, lanes):
        """The register tile (rows, cols, output blocks) that spans the most output
        blocks of a group whose weights fit :data:`L1_BYTES` (and the whole
        accumulator budget), over the most pixels of one row that keep it within half
        the budget and leave no ragged edge (at least one). Each input value it loads
        serves every one of those blocks, and the input map is read once per group
        instead of once per block: what a large map with few input channels wants
        (MobileNet v2's 16 -> 96 expansion at 112 px ran 1.45 x faster with 2 pixels
        x 6 blocks than with 16 pixels x 1 block). None when that is one block."""
        ow = self.out_shape[3]
        per_group, ob = self.tile_blocks
        vectors, budget = _accumulators(ob, lanes)
        window = self.in_blocks_per_group * self.data[4] * self.kernel ** 2
        ot = max((d for d in range(1, per_group + 1) if per_group % d == 0
                  and d * vectors <= budget and window * d * ob * 4 <= L1_BYTES), default=1)
        if ot == 1:
            return None
        limit = max(budget // 2, ot * vectors)  # one pixel at least
        fits = [rw for rw in range(1, 17) if rw * ot * vectors <= limit and
                (self._flat_tile_fits(rw) if self.pointwise else ow % rw == 0)]
        return (1, max(fits), ot)

    def _flat_tile_fits(self, pixels):
        """Whether pieces of ``pixels`` flat pixels (tiles, or chunks of tiles) cover a
        1x1 convolution's map with no ragged edge and none cut across a row, so that
        each piece's epilogue can follow it (TVM 0.27 infers the epilogue's loops of a
        piece cut across rows wrongly). Other tiles pad the pixels
        (:meth:`_padded_pixels`) and run the epilogue as a pass of its own."""
        if self.images_in_tile:
            return self._flat_pixels() % pixels == 0
        _, _, oh, ow, _ = self.out_shape
        return (oh * ow) % pixels == 0 and not (ow % pixels and pixels % ow)

    def tiles(self, lanes):
        """Tiles (rows, cols, output blocks, input blocks, unrolled): a register tile and
        the input-channel blocks reduced per pass over the tile's pixels. ``input blocks``
        equal to all of a group's blocks is the reduction innermost, the accumulators
        held in registers to the epilogue; fewer blocks the input-channel blocking
        (topi's ``tile_ic``), whose slices of input and weights stay in L1 while the
        partial sums go through memory, offered when a group has at least 4 input
        blocks (with fewer, a whole pass's slices fit L1 anyway) and the convolution does
        not :attr:`streams_weights`. Order: the best
        register tile unblocked and blocked, the :meth:`wide_tile`, then the next
        register tiles likewise (the best three in both forms), then the rest
        unblocked. With 16 lanes every tile is :attr:`ConvTile.unrolled`."""
        icb = self.in_blocks_per_group
        blocked = max((d for d in (8, 4, 2, 1) if icb % d == 0 and d < icb), default=None) \
            if icb >= 4 and not self.streams_weights else None
        unrolled = lanes == 16
        found = []
        for j, (rh, rw, ot) in enumerate(self.register_tiles(lanes)):
            found.append(ConvTile(rh, rw, ot, icb, unrolled))
            if j < 3 and blocked:
                found.append(ConvTile(rh, rw, ot, blocked, unrolled))
            wide = self.wide_tile(lanes) if j == 0 else None
            if wide:
                found.append(ConvTile(*wide, icb, unrolled))
        return list(dict.fromkeys(found))  # the wide tile may be a register tile too

    def _prefetch_weights(self, sch, at, sharing, oco, icbo, tile):
        """Prefetch the weights that the tiles read next, spread over the iterations of
        the window's column loop ``at`` of the tiles that read the current ones
        (``sharing``: the loops around it that number those, :func:`prefetch_ahead`), in
        the order the tiles read them (:meth:`_weight_row`): with the reduction innermost
        (``icbo`` None), the next output blocks' (``oco`` + 1), else the next pass's
        input blocks (``icbo`` + 1). With their weights flushed from the caches before
        each call, as inside a network (1 thread, an Intel Xeon): 2048 -> 512 and 512
        -> 2048 channel 1x1 convolutions on a 7 px map took 0.68 and 0.65 ms instead of
        0.83, a 384 -> 384 channel 3x3 one on 4 px 0.48 instead of 0.61; in cache 0.95
        to 0.96 x their time."""
        rh, rw, ot, icin, _ = tile
        weight = weight_buffer(sch, "conv")
        first_block = sch.get(oco).loop_var * ot
        if icbo is None:
            first_block, first_in, in_blocks = first_block + ot, 0, self.in_blocks_per_group
        else:
            first_in, in_blocks = (sch.get(icbo).loop_var + 1) * icin, icin
        ib = self.data[4]

        def row(r):
            return tirx.BufferLoad(weight, [*self._weight_row(r, first_block, first_in, ot), 0])

        prefetch_ahead(sch, at, sharing, ot * in_blocks * self.kernel ** 2 * ib, row,
                       ib * rh * rw * ot)

    def _weight_row(self, r, first_block, first_in, blocks):
        """The indices (output block, input block, kh, kw, input channel) of the
        ``r``-th weight row (a vector of an output block's lanes) that a register tile
        of ``blocks`` output blocks from ``first_block`` reads, over input blocks from
        ``first_in``, in the order it reads them: its output blocks, for each input
        channel of each window position of each input block; a block past the last is
        clamped to it."""
        k, ib = self.kernel, self.data[4]
        channel = r // blocks
        return (tirx.min(first_block + r % blocks, self.weight_shape[0] - 1),
                tirx.min(first_in + channel // (k * k * ib), self.in_blocks_per_group - 1),
                channel // (k * ib) % k, channel // ib % k, channel % ib)

    def schedule(self, sch, tile):
        """Register tiles of output pixels x blocks, the reduction (or ``in_blocks`` of
        it per pass) outside the tile's unrolled accumulators, the epilogue after each
        tile (or pass); where the tile pads a 1x1 convolution's flat pixels
        (:meth:`compute_for`), the epilogue after the whole convolution. The parallel
        loop runs over bands and groups of output blocks (:attr:`bands_first`); a
        convolution that pools its input (``pooled``) pools a band once, then runs the
        band's groups of output blocks serially. The input channels of a block (the
        reduction's innermost loop) are unrolled where the tile says so."""
        rh, rw, ot, icin, unrolled = tile
        pixels = self._padded_pixels(tile)
        conv = sch.get_sblock("conv")
        loops = sch.get_loops(conv)
        if self.in_channels is not None:  # the channels' axis as blocks and lanes
            *loops, c, kh, kw = loops
            icb, ic = sch.split(c, [None, self.data[4]])
            loops += [icb, kh, kw, ic]
        if pixels is None:
            n, oc, y, x, *o, icb, kh, kw, ic = loops
        else:  # flat pixels already
            n, oc, y, *o, icb, kh, kw, ic = loops
        o = sch.fuse(*o)  # the lanes' loop; a pair of blocks' (half, lane): one vector
        oco, oci = sch.split(oc, [None, ot])
        if self.images_in_tile:  # images, one pixel each, as the flat pixel axis
            sch.reorder(oco, oci, n)
            n, y, x = None, sch.fuse(n, y, x), None
            rh, rw = rw, None
        elif self.pointwise:
            y = y if pixels else sch.fuse(y, x)
            x, rh, rw = None, rw, None
        yo, yi = sch.split(y, [None, rh])
        xo, xi = sch.split(x, [None, rw]) if x is not None else (None, None)
        images = [] if n is None else [n]
        spatial_outer = [l for l in (yo, xo) if l is not None]
        tile_loops = [l for l in (oci, yi, xi) if l is not None]
        epilogue = sch.get_sblock("epilogue")
        # a part ends where a row does, its epilogue following it (rows of tiles are whole
        # rows; padded flat pixels' epilogue is a pass of its own, after every part)
        whole = ((lambda tiles: self._flat_tile_fits(tiles * rh))
                 if self.pointwise and not pixels else (lambda tiles: True))
        part, rest = row_parts(sch, spatial_outer[0], whole)
        parallel = images + ([part, oco] if self.bands_first else [oco, part])
        serial = [parallel.pop()] if self.pooled else []  # the blocks, after the pooling
        if icin == self.in_blocks_per_group:  # reduction innermost, epilogue per tile
            sch.reorder(*parallel, *serial, rest, *spatial_outer[1:], icb, kh, kw, ic,
                        *tile_loops, o)
            after = spatial_outer[-1] if len(spatial_outer) > 1 else rest
            reduction = icb
            sharing = ([] if self.bands_first else [part]) + [rest, *spatial_outer[1:], icb, kh]
            self._prefetch_weights(sch, kw, sharing, oco, None, tile)
        else:  # input-channel blocks outside the pixel loops of a band of whole tiles
            icbo, icbi = sch.split(icb, [None, icin])
            sch.reorder(*parallel, *serial, icbo, rest, *spatial_outer[1:], icbi, kh, kw, ic,
                        *tile_loops, o)
            after = (parallel + serial)[-1]
            reduction = icbo
            self._prefetch_weights(sch, kw, [rest, *spatial_outer[1:], icbi, kh], oco, icbo, tile)
        if not pixels:
            sch.reverse_compute_at(epilogue, after)
            sch.vectorize(sch.get_loops(epilogue)[-1])
        sch.vectorize(o)
        for loop in tile_loops + ([ic] if unrolled else []):
            sch.unroll(loop)
        _parallel(sch, *parallel)
        if self.pooled:  # the band's pooled pixels, all input blocks
            pooled = sch.get_sblock("pooled")
            sch.compute_at(pooled, sch.get_loops(conv)[0])
            sch.vectorize(sch.get_loops(pooled)[-1])
        if pixels:
            vectorize_inner(sch, epilogue)
        sch.decompose_reduction(conv, reduction)
        _schedule_padding(sch)


def _padding_block(sch):
    """The kernel's "pad" block, or None when it pads nothing."""
    try:
        return sch.get_sblock("pad")
    except Exception:  # noqa: BLE001 - no padding stage in this kernel
        return None


def _schedule_padding(sch):
    """The padded copy of the whole input, made before the kernel, in parallel."""
    pad = _padding_block(sch)
    if pad is not None:
        vectorize_inner(sch, pad)


def _pad_inside(sch, rows):
    """The padded input rows that one iteration of the loop ``rows`` (over output rows,
    or chunks of them) reads, made inside it (a few rows, in cache) instead of a padded
    copy of the whole map through memory."""
    pad = _padding_block(sch)
    if pad is not None:
        sch.compute_at(pad, rows)
        sch.vectorize(sch.get_loops(pad)[-1])


@dataclass(frozen=True)
class Depthwise(Kernel):
    """Depthwise convolution (one filter per channel) with weights (B, KH, KW, cb),
    then the epilogue. With ``pooled``, of ``data`` average-pooled 2x2/2 first (rounding
    up, each output the mean of the pixels it covers, as :class:`Pool` with ``ceil``):
    OctConv's stride 2 (:mod:`octconv.unit`), the pooling computed as the padded input
    rows are made, no pooled map stored."""
    data: tuple
    kernel: int
    stride: int
    pad: int
    epilogue: Epilogue
    pooled: bool = False

    @property
    def out_shape(self):
        n, b, _, _, c = self.data
        h, w = self.in_size
        return (n, b, _out_size(h, self.kernel, self.stride, self.pad),
                _out_size(w, self.kernel, self.stride, self.pad), c)

    @property
    def macs(self):
        return _volume(self.out_shape) * self.kernel ** 2

    @property
    def weight_shape(self):
        return (self.data[1], self.kernel, self.kernel, self.data[4])

    def compute(self):
        data, weight, shape, padded, kh, kw = _window_operands(self)
        s = self.stride
        conv = te.compute(shape, lambda n, b, y, x, i: te.sum(
            padded[n, b, y * s + kh, x * s + kw, i] * weight[b, kh, kw, i], axis=[kh, kw]),
            name="conv")
        extra, out = _with_epilogue(self.epilogue, conv, shape)
        return [data, weight] + extra, out

    def chunk_rows(self):
        """Output rows per chunk that pads its input rows once. Stride 1: the most rows,
        up to 16 and dividing the height, that leave at least 8 parallel chunks (of
        rows and channel blocks) at batch 1; with one row per chunk each input row
        was padded three times, once for each output row reading it, and alone the
        layers of the MobileNets ran 1.2-1.8 x slower (7 px maps the most). Stride 2:
        one row, which chunks did not beat."""
        _, blocks, oh, _, _ = self.out_shape
        if self.stride != 1:
            return 1
        return max(d for d in range(1, min(oh, 16) + 1)
                   if oh % d == 0 and (d == 1 or blocks * (oh // d) >= 8))

    def tiles(self, lanes):
        ow, rows = self.out_shape[3], self.chunk_rows()
        return [DepthwiseTile(rows, rw) for rw in (8, 7, 4, 14, 16, 2, 1) if rw <= ow]

    def schedule(self, sch, tile):
        rh, rw = tile
        conv = sch.get_sblock("conv")
        n, b, y, x, i, kh, kw = sch.get_loops(conv)
        yo, yi = sch.split(y, [None, rh])
        xo, xi = sch.split(x, [None, rw])
        outer = split_order(n, yo, b, self.data)
        sch.reorder(*outer, yi, xo, kh, kw, xi, i)
        epilogue = sch.get_sblock("epilogue")
        sch.reverse_compute_at(epilogue, xo)
        sch.vectorize(i)
        sch.unroll(xi)
        sch.vectorize(sch.get_loops(epilogue)[-1])
        if self.pooled:
            sch.compute_inline(sch.get_sblock("pooled"))
        _pad_inside(sch, outer[-1])
        _parallel(sch, *outer)
        sch.decompose_reduction(conv, kh)


def _window_operands(kernel):
    """What a :class:`Conv` or :class:`Depthwise` ``kernel`` computes from: the
    placeholders of its data and weights, its output shape, its input padded for its
    window (average-pooled 2x2/2 first where it pools as it reads) and the window's
    reduce axes (kh, kw)."""
    data = te.placeholder(kernel.data, F32, "data")
    weight = te.placeholder(kernel.weight_shape, F32, "weight")
    shape, k = kernel.out_shape, kernel.kernel
    padded = _pad(_average_2x2(data) if kernel.pooled else data, shape, k, kernel.stride,
                  kernel.pad, 0.0)
    return (data, weight, shape, padded) + _window_axes((k, k))


def _window_axes(window):
    """The reduce axes (kh, kw) over a ``window`` of (rows, columns)."""
    return tuple(te.reduce_axis((0, extent), name) for extent, name in zip(window, ("kh", "kw")))


def _average_2x2(data):
    """``data`` (N, B, H, W, cb) average-pooled 2x2/2, rounding up, each output the mean
    of the pixels it covers (the sum in :class:`Pool`'s order, then one division): a
    tensor that the kernel reading it computes in place."""
    _, _, h, w, _ = (int(d) for d in data.shape)

    def tap(n, b, y, x, i, dy, dx):
        """The pixel (2y + dy, 2x + dx); 0 past an odd map's end (checked only there)."""
        row, col, inside = 2 * y + dy, 2 * x + dx, []
        if h % 2:
            row, inside = te.min(row, h - 1), inside + [row < h]
        if w % 2:
            col, inside = te.min(col, w - 1), inside + [col < w]
        value = data[n, b, row, col, i]
        return tirx.if_then_else(tirx.all(*inside), value, tirx.const(0.0, F32)) \
            if inside else value

    return te.compute(
        (data.shape[0], data.shape[1], -(-h // 2), -(-w // 2), data.shape[4]),
        lambda n, b, y, x, i: (tap(n, b, y, x, i, 0, 0) + tap(n, b, y, x, i, 0, 1)
                               + tap(n, b, y, x, i, 1, 0) + tap(n, b, y, x, i, 1, 1))
        / (_covered(y, h, 2, 2, 0) * _covered(x, w, 2, 2, 0)), name="pooled")


def _covered(o, size, kernel, stride, pad):
    """How many of a map's ``size`` rows (or columns) the window of output ``o`` covers,
    windows of ``kernel`` every ``stride`` from ``-pad`` on: a constant where no
    window crosses the map's edge."""
    if pad == 0 and kernel == stride and size % stride == 0:
        return tirx.const(float(kernel), F32)
    start = o * stride - pad
    return (te.min(start + kernel, size) - te.max(start, 0)).astype(F32)


# ----------------------------------------------------------------------------- the rest

@dataclass(frozen=True)
class Pointwise(Kernel):
    """The epilogue applied to a tensor on its own (a BatchNorm+ReLU after a residual
    add, an add that no convolution absorbed, a channel gate)."""
    data: tuple
    epilogue: Epilogue

    def compute(self):
        data = te.placeholder(self.data, F32, "data")
        extra, out = _with_epilogue(self.epilogue, data, self.data)
        return [data] + extra, out

    def schedule(self, sch, tile):
        vectorize_inner(sch, sch.get_sblock("epilogue"))


def _window(padded, shape, window, stride, reduce, divisor=None):
    """The map ``shape`` whose pixel (y, x) reduces (``te.max`` or ``te.sum``) the
    ``window`` (rows, columns) of ``padded`` from (y, x) x ``stride`` on: a "pool"
    block, then, with ``divisor`` (of y and x, for an average), an "epilogue" block
    dividing by it (as :func:`_schedule_window` schedules them)."""
    kh, kw = _window_axes(window)
    pooled = te.compute(shape, lambda n, b, y, x, i: reduce(
        padded[n, b, y * stride + kh, x * stride + kw, i], axis=[kh, kw]), name="pool")
    if divisor is None:
        return pooled
    return te.compute(shape, lambda n, b, y, x, i: pooled[n, b, y, x, i] / divisor(y, x),
                      name="epilogue")


def _schedule_window(sch, data):
    """The "pool" block (n, b, y, x, lane, window rows, window cols) over the input map
    of shape ``data``: the window loops inside the vectorized lanes' loop, any padding
    made per output row, bands of rows (:func:`row_parts`) and channel blocks in
    parallel, in the order :func:`split_order` gives; an "epilogue" block (an average's
    division) runs on each output pixel's lanes as soon as they are summed, in the same
    loop (as a second loop over a whole intermediate map it took 1.5-2 x the time)."""
    pool = sch.get_sblock("pool")
    loops = sch.get_loops(pool)
    n, b, y, x = loops[:4]
    part, rest = row_parts(sch, y)
    outer = split_order(n, part, b, data)
    sch.reorder(*outer, rest, x, *loops[5:], loops[4])
    sch.vectorize(loops[4])
    _pad_inside(sch, rest)
    _parallel(sch, *outer)
    sch.decompose_reduction(pool, loops[5])
    if any(sch.get(block).name_hint == "epilogue" for block in sch.get_child_blocks(
            sch.get_sblock("root"))):
        epilogue = sch.get_sblock("epilogue")
        sch.reverse_compute_at(epilogue, x)
        sch.vectorize(sch.get_loops(epilogue)[-1])


@dataclass(frozen=True)
class Pool(Kernel):
    """Max or average pooling (averages over the covered pixels only), ``ceil`` rounding
    as MXNet's 'full' convention."""
    data: tuple
    pool_type: str
    kernel: int
    stride: int
    pad: int
    ceil: bool

    @property
    def out_shape(self):
        n, b, h, w, c = self.data
        size = lambda s: _out_size(s, self.kernel, self.stride, self.pad, self.ceil)
        return (n, b, size(h), size(w), c)

    def compute(self):
        _, _, h, w, _ = self.data
        data = te.placeholder(self.data, F32, "data")
        shape = self.out_shape
        k, s, p = self.kernel, self.stride, self.pad
        if self.pool_type == "max":
            padded = _pad(data, shape, k, s, p, -3.4e38)
            return [data], _window(padded, shape, (k, k), s, te.max)
        padded = _pad(data, shape, k, s, p, 0.0)
        return [data], _window(padded, shape, (k, k), s, te.sum, lambda y, x: (
            _covered(y, h, k, s, p) * _covered(x, w, k, s, p)))

    def schedule(self, sch, tile):
        _schedule_window(sch, self.data)


@dataclass(frozen=True)
class GlobalPool(Kernel):
    """Global average pooling to N x B x 1 x 1 x cb."""
    data: tuple

    def compute(self):
        n_, b_, h, w, c = self.data
        data = te.placeholder(self.data, F32, "data")
        return [data], _window(data, (n_, b_, 1, 1, c), (h, w), 1, te.sum,
                               lambda y, x: float(h * w))

    def schedule(self, sch, tile):
        _schedule_window(sch, self.data)


@dataclass(frozen=True)
class Upsample(Kernel):
    """Nearest 2x upsampling cropped to ``size`` (an l2h path no add absorbed)."""
    data: tuple
    size: tuple

    def compute(self):
        n_, b_, _, _, c = self.data
        data = te.placeholder(self.data, F32, "data")
        out = te.compute((n_, b_) + tuple(self.size) + (c,), lambda n, b, y, x, i:
                         data[n, b, y // 2, x // 2, i], name="epilogue")
        return [data], out

    def schedule(self, sch, tile):
        vectorize_inner(sch, sch.get_sblock("epilogue"))


@dataclass(frozen=True)
class Concat(Kernel):
    """Channel concatenation of tensors with layouts ``layouts`` into ``out`` (padding
    of each input is skipped, channels are re-blocked as needed)."""
    spatial: tuple  # (N, H, W)
    layouts: tuple
    out: Layout

    def compute(self):
        n_, h, w = self.spatial
        inputs = [te.placeholder((n_, lay.blocks, h, w, lay.block), F32, f"data{j}")
                  for j, lay in enumerate(self.layouts)]
        starts = []
        total = 0
        for lay in self.layouts:
            starts.append(total)
            total += lay.channels

        def value(n, b, y, x, i):
            c = b * self.out.block + i
            result = _zero()
            for data, lay, start in reversed(list(zip(inputs, self.layouts, starts))):
                local = c - start
                result = tirx.if_then_else(
                    tirx.all(local >= 0, local < lay.channels),
                    data[n, local // lay.block, y, x, local % lay.block], result)
            return result

        out = te.compute((n_, self.out.blocks, h, w, self.out.block), value, name="epilogue")
        return inputs, out

    def schedule(self, sch, tile):
        vectorize_inner(sch, sch.get_sblock("epilogue"))


@dataclass(frozen=True)
class Dense(Kernel):
    """Fully connected layer on the N x B x 1 x 1 x cb pooled features: weights packed
    (J/16, B, cb, 16), bias (J/16, 16), output N x ``classes``. Scheduled with a tile of
    few images, each image's sum over the input channels is split into
    :meth:`partial_sums` sums of interleaved channels, added in the epilogue."""
    data: tuple
    out_blocks: int
    classes: int

    @property
    def macs(self):
        n_, b_, _, _, c = self.data
        return n_ * self.classes * b_ * c

    @staticmethod
    def partial_sums(images):
        """Independent sums per output vector of an image in a register tile of
        ``images`` images: 4, 2 or 1 (blocks of 8 or 16 channels split evenly), so that
        a tile of fewer than 4 images still holds about 4 accumulators and its
        multiply-adds do not each wait for the one before. At batch 1 a 2048 -> 1000
        layer with its weights in cache took 0.08 ms instead of 0.13 with one sum (1
        thread, a Zen 5); with its weights in memory, 0.2 ms either way."""
        return max(1, 4 // images)

    def compute(self):
        return self.compute_for(None)

    def compute_for(self, tile):
        """The layer with :meth:`partial_sums` sums for a register tile of ``tile``
        images (one sum when None)."""
        n_, b_, _, _, c = self.data
        parts = 1 if tile is None else self.partial_sums(tile)
        data = te.placeholder(self.data, F32, "data")
        weight = te.placeholder((self.out_blocks, b_, c, 16), F32, "weight")
        bias = te.placeholder((self.out_blocks, 16), F32, "bias")
        rb = te.reduce_axis((0, b_), "rb")
        rc = te.reduce_axis((0, c // parts), "rc")
        acc = te.compute((n_, self.out_blocks, parts, 16), lambda n, j, k, o: te.sum(
            data[n, rb, 0, 0, rc * parts + k] * weight[j, rb, rc * parts + k, o],
            axis=[rb, rc]), name="conv")

        def total(n, j):
            partial = [acc[n, j // 16, k, j % 16] for k in range(parts)]
            return sum(partial[1:], partial[0]) + bias[j // 16, j % 16]

        out = te.compute((n_, self.classes), total, name="epilogue")
        return [data, weight, bias], out

    def tiles(self, lanes):
        """One candidate: the images whose accumulators a register tile holds, each
        weight vector loaded once for all of them; the largest divisor of the batch
        whose 16-lane output block per image fits the accumulator budget (24 of 32 zmm
        with AVX-512, 12 of 16 ymm with AVX2, where a block takes 2 registers)."""
        vectors, budget = _accumulators(16, lanes)
        batch = self.data[0]
        return [max(d for d in range(1, min(batch, budget // vectors) + 1) if batch % d == 0)]

    def schedule(self, sch, tile):
        acc = sch.get_sblock("conv")
        n, j, k, o, rb, rc = sch.get_loops(acc)
        no, ni = sch.split(n, [None, tile])
        sch.reorder(j, no, rb, rc, ni, k, o)
        sch.vectorize(o)
        sch.unroll(ni)
        sch.unroll(k)
        _parallel(sch, j, no)
        sch.decompose_reduction(acc, rb)


@dataclass(frozen=True)
class Flatten(Kernel):
    """N x B x 1 x 1 x cb to N x ``channels`` (a network ending in a 1x1 convolution)."""
    data: tuple
    channels: int

    def compute(self):
        block = self.data[4]
        data = te.placeholder(self.data, F32, "data")
        out = te.compute((self.data[0], self.channels), lambda n, c:
                         data[n, c // block, 0, 0, c % block], name="epilogue")
        return [data], out

    def schedule(self, sch, tile):
        vectorize_inner(sch, sch.get_sblock("epilogue"))


@dataclass(frozen=True)
class PackInput(Kernel):
    """NCHW input to NCHW[cb]c (zero-padded channels)."""
    data: tuple
    out: Layout

    def compute(self):
        n_, c_, h, w = self.data
        data = te.placeholder(self.data, F32, "data")
        block = self.out.block

        def value(n, b, y, x, i):
            c = b * block + i
            return tirx.if_then_else(c < c_, data[n, te.min(c, c_ - 1), y, x], _zero())

        out = te.compute((n_, self.out.blocks, h, w, block), value, name="epilogue")
        return [data], out

    def schedule(self, sch, tile):
        vectorize_inner(sch, sch.get_sblock("epilogue"))

