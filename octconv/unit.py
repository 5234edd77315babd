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


def _pair(value, name):
    """Normalize an int or a 2-sequence of ints to a tuple ``(h, w)``."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 0 for v in pair):
        raise ValueError(f"{name} must be a non-negative int or a pair of them, got {value!r}")
    return pair


@dataclass(frozen=True)
class Path:
    """One convolution of an OctConv layer.

    ``pools`` is how many 2x2 average poolings are applied to the source before the
    (always stride-1) convolution; ``upsample`` says the output is upsampled 2x
    (nearest) and cropped to the high-frequency output.
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
    kernel_size: tuple
    padding: tuple
    stride: int
    paths: tuple

    @property
    def has_low_input(self):
        return any(p.source == "l" for p in self.paths)


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
                 exchange=EXCHANGE_PATHS):
    """Plan an OctConv layer; raise ValueError naming the first bad argument.

    Parameters
    ----------
    channels : int
        Total output width (high + low), split by ``alpha_out``.
    in_channels : int or (int, int)
        Total input width, split by ``alpha_in``, or its explicit ``(high, low)``
        widths. ``0`` defers the input width to the first forward pass (Gluon only).
    kernel_size, padding : int or (int, int)
        Of every path. When a low branch takes part, padding must keep the size
        (``2 * padding == kernel_size - 1``) so the four paths meet.
    stride : 1 or 2
    alpha_in, alpha_out : float in [0, 1)
        Low-frequency share of the input and the output.
    groups : int
        Nominal group count; ``groups == channels == in_channels > 1`` is depthwise.
    use_bias : bool
        One bias vector per output branch.
    exchange : sequence of 'h2l', 'l2h'
        The exchange paths kept where the layer also has ``l2l`` (default both).
    """
    alpha_in = check_alpha(alpha_in, "alpha_in")
    alpha_out = check_alpha(alpha_out, "alpha_out")
    kernel_size = _pair(kernel_size, "kernel_size")
    padding = _pair(padding, "padding")
    if stride not in (1, 2):
        raise ValueError(f"OctConv stride must be 1 or 2, got {stride!r}")
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
    if len(certain) > 1 and any(2 * p != k - 1 for p, k in zip(padding, kernel_size)):
        raise ValueError(
            f"OctConv with a low-frequency branch needs size-preserving padding "
            f"(2 * padding == kernel_size - 1), got kernel_size={kernel_size}, "
            f"padding={padding}")
    return OctConvPlan(in_channels=in_split, channels=out_split, kernel_size=kernel_size,
                       padding=padding, stride=stride, paths=tuple(paths))
