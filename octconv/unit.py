"""The geometry of one Octave Convolution, independent of any framework.

A feature map is a pair ``(hi, lo)``: ``hi`` at full resolution, ``lo`` at half the
resolution (rounded up) holding a fraction ``alpha`` of the channels, or absent.
:func:`plan_octconv` turns the arguments of a layer into the list of convolution paths
that layer builds; the Symbol and the Gluon APIs both translate that plan, so they build
the same layer (Chen et al., "Drop an Octave", ICCV 2019, Eq. 4 and Sec. 3.3).

Rules (docs/ARCHITECTURES.md, section 1):

* split: ``(C - floor(alpha*C), floor(alpha*C))``, computed as the release did
  (``int(alpha * C)``), so its checkpoints fit.
* paths: ``h2h``, ``h2l`` (2x2 average pool, then conv), ``l2l``, ``l2h`` (conv, then
  nearest 2x upsampling); a path exists when its source and its target exist.
* stride 2 is never a strided conv: every source is average-pooled 2x2 once more,
  except ``l2h``, which then skips its upsampling.
* groups: every path gets the nominal ``groups``; depthwise (``groups`` equal to the
  input and output width) keeps only ``h2h`` and ``l2l``, each grouped per channel.
* exchange: ``h2l`` and ``l2h`` carry information between the branches; either can be
  switched off (the paper's path ablation, Appendix C) where the layer has an ``l2l`` path.
  A layer that starts the low branch (no low input) keeps ``h2l`` and one that ends it
  (no low output) keeps ``l2h``: without them the low branch would start empty or be
  left unused.
* bias: one bias per output branch, on ``h2h`` (else ``l2h``) and ``h2l`` (else ``l2l``).
* odd sizes: pooling rounds up and averages only the pixels it covers; the upsampled
  ``l2h`` map is cropped to the ``h2h`` map. So any input size works.
* video (``dims=3``, paper Sec. 4.4): kernels ``(t, h, w)``; the octave is spatial, so
  pooling and upsampling act on height and width of every frame and the low map has
  all the frames; a temporal stride is every path's stride in time.
"""
from dataclasses import dataclass

__all__ = ["check_alpha", "check_exchange", "split_channels", "branch_widths", "Path",
           "OctConvPlan", "plan_octconv", "EXCHANGE_PATHS"]

PATH_NAMES = ("h2h", "h2l", "l2h", "l2l")
EXCHANGE_PATHS = ("h2l", "l2h")  # the paths between the branches, which can be switched off


def check_alpha(alpha, name="alpha"):
    """Return ``alpha`` as a float, or raise ValueError unless it is a number in [0, 1)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise ValueError(f"{name} must be a number in [0, 1), got {alpha!r}")
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {alpha}")
    return float(alpha)


def check_exchange(exchange, name="exchange"):
    """Return ``exchange`` as a sorted tuple of distinct names of :data:`EXCHANGE_PATHS`
    (the exchange paths kept), or raise ValueError naming what is wrong."""
    if isinstance(exchange, str) or not all(isinstance(p, str) for p in exchange):
        raise ValueError(f"{name} must be a list of path names out of "
                         f"{list(EXCHANGE_PATHS)}, got {exchange!r}")
    unknown = sorted(set(exchange) - set(EXCHANGE_PATHS))
    if unknown or len(set(exchange)) != len(exchange):
        raise ValueError(f"{name}: {exchange!r} must name each of {list(EXCHANGE_PATHS)} "
                         f"at most once" + (f" (unknown: {', '.join(unknown)})" if unknown
                                            else ""))
    return tuple(p for p in EXCHANGE_PATHS if p in exchange)


def split_channels(channels, alpha, name="channels"):
    """Split ``channels`` into ``(high, low)`` with ``low = floor(alpha * channels)``."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"{name} must be a positive integer, got {channels!r}")
    low = int(check_alpha(alpha) * channels)
    return channels - low, low


def branch_widths(channels, alpha, name="channels"):
    """``(high, low)`` widths: ``channels`` split by ``alpha``, or ``channels`` itself when
    it is already a ``(high, low)`` pair (e.g. after a branch-wise concatenation)."""
    if isinstance(channels, tuple):
        if (len(channels) != 2 or not all(isinstance(c, int) and c >= 0 for c in channels)
                or channels[0] < 1):
            raise ValueError(f"{name} must be an int or a (high, low) pair of "
                             f"non-negative ints with high > 0, got {channels!r}")
        return channels
    return split_channels(channels, alpha, name)


def _tuple(value, name, dims):
    """Normalize an int or a ``dims``-sequence of ints to a tuple (``(h, w)`` or
    ``(t, h, w)``)."""
    values = (value,) * dims if isinstance(value, int) else tuple(value)
    if len(values) != dims or not all(isinstance(v, int) and not isinstance(v, bool)
                                      and v >= 0 for v in values):
        raise ValueError(f"{name} must be a non-negative int or {dims} of them, got {value!r}")
    return values


def _strides(stride, dims):
    """``(temporal, spatial)`` strides of an int (the spatial stride; temporal 1) or a
    ``dims``-tuple whose spatial entries are equal, 1 or 2."""
    if isinstance(stride, int) and not isinstance(stride, bool):
        strides = (1,) * (dims - 2) + (stride, stride)
    else:
        strides = _tuple(stride, "stride", dims)
    if strides[-1] != strides[-2] or strides[-1] not in (1, 2):
        raise ValueError(f"OctConv stride must be 1 or 2 in height and width alike, "
                         f"got {stride!r}")
    if dims == 3 and strides[0] < 1:
        raise ValueError(f"OctConv temporal stride must be at least 1, got {stride!r}")
    return (strides[0] if dims == 3 else 1), strides[-1]


@dataclass(frozen=True)
class Path:
    """One convolution of an OctConv layer.

    ``pools`` is how many 2x2 average poolings (over height and width) are applied to
    the source before the convolution (stride 1 in space; the layer's temporal stride
    in time); ``upsample`` says the output is upsampled 2x (nearest, in height and
    width) and cropped to the high-frequency output.
    """

    name: str
    in_channels: int
    channels: int
    groups: int
    pools: int
    upsample: bool
    use_bias: bool

    @property
    def source(self):
        return self.name[0]

    @property
    def target(self):
        return self.name[2]


@dataclass(frozen=True)
class OctConvPlan:
    """Everything needed to build one OctConv layer: widths as (high, low) and its paths.

    An ``in_channels`` of ``(0, 0)`` means "not known yet" (Gluon deferred init): the
    plan is provisional, with a low input iff ``alpha_in > 0``, until the layer's first
    call settles it (:meth:`octconv.gluon.OctConv2D.forward`).
    """

    in_channels: tuple
    channels: tuple
    kernel_size: tuple          # (h, w), or (t, h, w) for a 3-D layer
    padding: tuple
    stride: int                 # in height and width: 1 or 2
    paths: tuple
    temporal_stride: int = 1    # 3-D layers: the stride of every path's conv in time

    @property
    def has_low_input(self):
        return any(p.source == "l" for p in self.paths)

    @property
    def dims(self):
        """2 for an image layer, 3 for a video layer."""
        return len(self.kernel_size)

    @property
    def conv_stride(self):
        """The stride of each path's convolution: 1 in space, the temporal stride in time."""
        return (self.temporal_stride,) * (self.dims - 2) + (1, 1)


def _check_groups(paths, groups, check_inputs):
    """Every path needs at least ``groups`` channels on each side, then a multiple of it."""
    widths = [(p.name, "output", p.channels) for p in paths]
    widths += [(p.name, "input", p.in_channels) for p in paths] if check_inputs else []
    for name, kind, width in widths:
        if width < groups:
            raise ValueError(
                f"OctConv path {name} has {width} {kind} channels, fewer than "
                f"groups={groups}: choose an alpha that leaves each branch at least "
                f"{groups} channels")
    for name, kind, width in widths:
        if width % groups:
            raise ValueError(
                f"OctConv path {name} has {width} {kind} channels, not divisible "
                f"by groups={groups}")


def plan_octconv(channels, kernel_size, in_channels=0, stride=1, padding=0,
                 alpha_in=0.0, alpha_out=0.0, groups=1, use_bias=False,
                 exchange=EXCHANGE_PATHS, dims=2):
    """Plan an OctConv layer; raise ValueError naming the first bad argument.

    Parameters
    ----------
    channels : int
        Total output width (high + low), split by ``alpha_out``.
    in_channels : int or (int, int)
        Total input width, split by ``alpha_in``, or its explicit ``(high, low)``
        widths. ``0`` defers the input width to the first forward pass (Gluon only).
    kernel_size, padding : int or (int, int), or (t, h, w) when ``dims`` is 3
        Of every path. When a low branch takes part, padding must keep the height and
        width (``2 * padding == kernel_size - 1`` in both) so the four paths meet; in
        time all paths are alike, so any padding fits.
    stride : 1 or 2, or (t, s, s) with s 1 or 2 when ``dims`` is 3
        Spatial stride 2 average-pools every source (the octave stays spatial); a
        temporal stride is the stride in time of every path's convolution.
    alpha_in, alpha_out : float in [0, 1)
        Low-frequency share of the input and the output.
    groups : int
        Nominal group count; ``groups == channels == in_channels > 1`` is depthwise.
    use_bias : bool
        One bias vector per output branch.
    exchange : sequence of 'h2l', 'l2h'
        The exchange paths kept where the layer also has ``l2l`` (default both).
    dims : 2 or 3
        Image (N, C, H, W) or video (N, C, T, H, W) layer.
    """
    if dims not in (2, 3):
        raise ValueError(f"OctConv dims must be 2 or 3, got {dims!r}")
    alpha_in = check_alpha(alpha_in, "alpha_in")
    alpha_out = check_alpha(alpha_out, "alpha_out")
    kernel_size = _tuple(kernel_size, "kernel_size", dims)
    padding = _tuple(padding, "padding", dims)
    temporal_stride, stride = _strides(stride, dims)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    exchange = check_exchange(exchange)
    out_split = split_channels(channels, alpha_out)
    if isinstance(in_channels, tuple):
        in_split = branch_widths(in_channels, alpha_in, "in_channels")
        in_channels = sum(in_split)
    elif isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 0:
        raise ValueError(f"in_channels must be a non-negative integer or a (high, low) "
                         f"pair, got {in_channels!r}")
    elif in_channels:
        in_split = split_channels(in_channels, alpha_in, "in_channels")
    # Depthwise: groups == channels == input width. With the input width unknown, a low
    # output branch decides: a grouped layer with groups == channels would need every
    # path to hold all the channels, which split branches never do.
    depthwise = groups > 1 and groups == channels and (
        in_channels == channels if in_channels else out_split[1] > 0)
    if not in_channels:
        in_split = split_channels(channels, alpha_in) if depthwise else (0, 0)
    has_low_in = in_split[1] > 0 if in_channels or depthwise else alpha_in > 0
    if depthwise and in_split != out_split:
        raise ValueError(
            f"depthwise OctConv needs equal input and output splits, got input "
            f"{in_split} (alpha_in={alpha_in}) and output {out_split} (alpha_out={alpha_out})")

    sources = {"h": in_split[0], "l": in_split[1]}
    exists = {"h": True, "l": has_low_in}
    targets = {"h": out_split[0], "l": out_split[1]}
    inner = exists["l"] and targets["l"] > 0  # the layer has l2l
    paths, biased = [], set()
    for name in PATH_NAMES:
        src, dst = name[0], name[2]
        if not exists[src] or targets[dst] == 0 or (depthwise and src != dst):
            continue
        if inner and name in EXCHANGE_PATHS and name not in exchange:
            continue
        upsample = name == "l2h" and stride == 1
        pools = int(name == "h2l") + int(stride == 2 and name != "l2h")
        path = Path(name=name, in_channels=sources[src], channels=targets[dst],
                    groups=targets[dst] if depthwise else groups, pools=pools,
                    upsample=upsample, use_bias=use_bias and dst not in biased)
        if use_bias:
            biased.add(dst)
        paths.append(path)
    if not depthwise:
        _check_groups(paths, groups, check_inputs=bool(in_channels))

    # paths from a deferred low input are not certain: the first call's check has them
    certain = [p for p in paths if in_channels or p.source == "h"]
    spatial = zip(padding[-2:], kernel_size[-2:])
    if len(certain) > 1 and any(2 * p != k - 1 for p, k in spatial):
        raise ValueError(
            f"OctConv with a low-frequency branch needs size-preserving padding "
            f"(2 * padding == kernel_size - 1 in height and width), got "
            f"kernel_size={kernel_size}, padding={padding}")
    return OctConvPlan(in_channels=in_split, channels=out_split, kernel_size=kernel_size,
                       padding=padding, stride=stride, paths=tuple(paths),
                       temporal_stride=temporal_stride)
