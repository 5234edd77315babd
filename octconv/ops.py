"""Pair operations written once for both MXNet APIs.

Every function takes ``F`` (``mxnet.symbol`` or ``mxnet.ndarray``, as a Gluon
``hybrid_forward`` receives it) and works on pairs ``(hi, lo)`` with ``lo=None`` when
there is no low-frequency part. Operations with parameters (convolution, BatchNorm,
squeeze-excitation) take callables that apply them, so the Symbol API and the Gluon
API only differ in where parameters live.
"""
__all__ = ["avg_pool2", "upsample2_like", "octconv_forward", "check_pair", "activation",
           "pool", "global_pool", "concat", "add", "merge", "squeeze_excitation", "is_array",
           "check_path_input", "CEIL_POOL_PAD", "ACTIVATIONS", "PairOps"]

# ``pad_width`` (before, after for N, C, H, W) of the edge padding that, followed by a
# 2x2/2 'valid' pooling, makes a ceil-mode pooling that works down to 1 pixel
# (:func:`_pool2_ceil`); the graph readers recognize the pair by it
# (:meth:`octconv.graph.Graph.pooled_entry`).
CEIL_POOL_PAD = (0, 0, 0, 0, 0, 1, 0, 1)


def avg_pool2(F, x):
    """2x2/2 average pooling to ceil(n / 2) per dimension (any n >= 1), averaging only the
    pixels each window covers (see :func:`_pool2_ceil`)."""
    return _pool2_ceil(F, x, "avg")


def _pool2_ceil(F, x, pool_type):
    """2x2/2 pooling rounding up, for every size down to 1 pixel.

    MXNet's 'full' (ceil) convention refuses a dimension of 1 (the kernel exceeds it), so
    the map is edge-padded by one row and one column at its end and pooled in the 'valid'
    convention: on an odd dimension the last window holds a pixel and its copy, whose
    average and maximum are the pixel's, exactly what 'full' gives; on an even one no
    window reaches the copy. The TVM lowering and the ONNX export fold the pair back into
    one ceil-mode pooling.
    """
    padded = F.pad(x, mode="edge", pad_width=CEIL_POOL_PAD)
    return F.Pooling(padded, kernel=(2, 2), stride=(2, 2), pool_type=pool_type,
                     pooling_convention="valid")


def upsample2_like(F, x, like):
    """Nearest 2x upsampling of ``x``, cropped to the spatial size of ``like``."""
    up = F.UpSampling(x, scale=2, sample_type="nearest", num_args=1)
    return F.slice_like(up, like, axes=(2, 3))


def is_array(x):
    """True for an NDArray (imperative mode, shapes known), False for a Symbol."""
    return hasattr(x, "shape") and not hasattr(x, "list_outputs")


def check_pair(hi, lo, in_channels, has_low, name):
    """Raise ValueError unless ``(hi, lo)`` fits a layer declared with these inputs.

    Presence of ``lo`` is always checked; channel counts and the low map's size
    (``ceil(high / 2)``) are checked when the tensors have shapes (imperative mode).
    """
    if has_low and lo is None:
        raise ValueError(f"{name}: expects a low-frequency input (alpha_in > 0), got lo=None")
    if not has_low and lo is not None:
        raise ValueError(f"{name}: declared without a low-frequency input, got a lo tensor")
    if not is_array(hi):
        return
    widths = (hi.shape[1], lo.shape[1] if lo is not None else 0)
    if in_channels != (0, 0) and widths != tuple(in_channels):
        raise ValueError(f"{name}: input has (high, low) channels {widths}, declared "
                         f"{tuple(in_channels)}")
    if lo is not None:
        expected = tuple((s + 1) // 2 for s in hi.shape[2:])
        if tuple(lo.shape[2:]) != expected:
            raise ValueError(f"{name}: low map is {tuple(lo.shape[2:])}, expected half of "
                             f"the high map {tuple(hi.shape[2:])} rounded up: {expected}")
        if lo.shape[0] != hi.shape[0]:
            raise ValueError(f"{name}: batch sizes differ, {hi.shape[0]} and {lo.shape[0]}")


def check_path_input(name, size, kernel_size, padding):
    """Raise ValueError if a path's (pooled) input map of ``size`` is smaller than its
    kernel with padding."""
    if any(d + 2 * p < k for d, p, k in zip(size, padding, kernel_size)):
        raise ValueError(f"OctConv path {name}: its input map {tuple(size)} is smaller "
                         f"than the kernel {tuple(kernel_size)} with padding "
                         f"{tuple(padding)}")


def octconv_forward(F, plan, hi, lo, conv):
    """Apply the OctConv layer ``plan`` to ``(hi, lo)``; ``conv(path, x)`` runs one path.

    Y_h = h2h(X_h) + up(l2h(X_l)),  Y_l = h2l(pool(X_h)) + l2l(X_l)   (paper, Eq. 4),
    with one more 2x2 average pool on every source at stride 2 (none for l2h, which
    then skips its upsampling). Returns ``(Y_h, Y_l)``, ``Y_l`` None without low output.
    """
    pooled = {("h", 0): hi, ("l", 0): lo}

    def source(branch, pools):
        if (branch, pools) not in pooled:
            pooled[(branch, pools)] = avg_pool2(F, source(branch, pools - 1))
        return pooled[(branch, pools)]

    outputs = {"h": None, "l": None}
    for path in plan.paths:  # h2h comes first, so l2h can be cropped to it
        x = source(path.source, path.pools)
        if is_array(x):
            check_path_input(path.name, x.shape[2:], plan.kernel_size, plan.padding)
        y = conv(path, x)
        if path.upsample:
            y = upsample2_like(F, y, outputs["h"])
        previous = outputs[path.target]
        outputs[path.target] = y if previous is None else previous + y
    return outputs["h"], outputs["l"]


ACTIVATIONS = {
    "relu": lambda F, x: F.Activation(x, act_type="relu"),
    "relu6": lambda F, x: F.clip(x, 0.0, 6.0),
    "sigmoid": lambda F, x: F.Activation(x, act_type="sigmoid"),
}


def _map(fn, pair):
    hi, lo = pair
    return fn(hi), (None if lo is None else fn(lo))


def activation(F, pair, act):
    """Apply ``act`` ('relu', 'relu6' or 'sigmoid') to each branch."""
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; choose one of {sorted(ACTIVATIONS)}")
    return _map(lambda x: ACTIVATIONS[act](F, x), pair)


def pool(F, pair, pool_type, kernel, stride, padding=0):
    """Max or average pooling of each branch, ``kernel`` x ``kernel``.

    Every branch comes out at ceil(size / stride), so a low map stays half its high map
    at any size: rounding is down when ``kernel == 2 * padding + 1`` (e.g. 3x3/2 pad 1)
    and up when ``kernel == stride + 2 * padding`` (e.g. 2x2/2, which also works on
    1-pixel maps; the others need maps of at least their kernel); other shapes raise.
    Averages exclude padding.
    """
    if pool_type not in ("avg", "max"):
        raise ValueError(f"pool_type must be 'avg' or 'max', got {pool_type!r}")
    if kernel == stride == 2 and padding == 0:
        return _map(lambda x: _pool2_ceil(F, x, pool_type), pair)
    if kernel == 2 * padding + 1:
        convention = "valid"
    elif kernel == stride + 2 * padding:
        convention = "full"
    else:
        raise ValueError(
            f"pair pooling needs kernel == 2 * padding + 1 or kernel == stride + 2 * padding "
            f"to keep the low map at half the high map, got kernel={kernel}, "
            f"stride={stride}, padding={padding}")
    return _map(lambda x: F.Pooling(x, kernel=(kernel, kernel), stride=(stride, stride),
                                    pad=(padding, padding), pool_type=pool_type,
                                    pooling_convention=convention, count_include_pad=False),
                pair)


def global_pool(F, pair, pool_type="avg"):
    """Global pooling of each branch to N x C x 1 x 1."""
    return _map(lambda x: F.Pooling(x, kernel=(1, 1), global_pool=True,
                                    pool_type=pool_type), pair)


def concat(F, *pairs):
    """Concatenate pairs along channels, high with high and low with low.

    The no-op reshape moves the result to plain memory layout: without it, MXNet
    1.9's oneDNN backward crashes (SIGFPE or "could not construct a sub-memory") when
    such a concatenation of small low-frequency maps feeds BatchNorm and a convolution,
    as in Oct-DenseNet.
    """
    his = [hi for hi, _ in pairs]
    los = [lo for _, lo in pairs if lo is not None]

    def cat(xs):
        return xs[0] if len(xs) == 1 else F.reshape(F.concat(*xs, dim=1), shape=(0, 0, 0, 0))

    return cat(his), (cat(los) if los else None)


def add(F, a, b):
    """Element-wise sum of two pairs of the same structure (residual connection)."""
    if (a[1] is None) != (b[1] is None):
        raise ValueError("cannot add a pair with a low branch to a pair without one")
    return a[0] + b[0], (None if a[1] is None else a[1] + b[1])


def merge(F, pair):
    """One tensor at high resolution: concat(hi, nearest-upsampled lo cropped to hi)."""
    hi, lo = pair
    return hi if lo is None else F.concat(hi, upsample2_like(F, lo, hi), dim=1)


def squeeze_excitation(F, pair, reduce, expand):
    """Squeeze-excitation over both branches.

    Global average pool of each branch -> concat -> ``reduce`` (1x1 conv with bias) ->
    ReLU -> ``expand(branch, z)`` (1x1 conv with bias to that branch's width) ->
    sigmoid -> multiply each branch by its own gate.
    """
    hi_vec, lo_vec = global_pool(F, pair)
    squeezed = hi_vec if lo_vec is None else F.concat(hi_vec, lo_vec, dim=1)
    hidden = F.Activation(reduce(squeezed), act_type="relu")
    gate = lambda branch, x: F.broadcast_mul(
        x, F.Activation(expand(branch, hidden), act_type="sigmoid"))
    hi, lo = pair
    return gate("h", hi), (None if lo is None else gate("l", lo))


class PairOps:
    """The parameter-free half of the builders' interface (see :mod:`octconv.builders`),
    for ``F`` = ``mx.sym`` or ``mx.nd``. Each API's backend adds the parametric ops:
    ``conv``, ``plain_conv``, ``bn``, ``se``, ``dense``; their ``conv`` keeps only the
    exchange paths in ``exchange`` (see :func:`octconv.unit.plan_octconv`)."""

    def __init__(self, F, last_gamma=False, exchange=("h2l", "l2h")):
        self.F = F
        self.last_gamma = last_gamma
        self.exchange = exchange
        self.residual_ends = []  # BN layers that end a residual branch

    def gamma_init(self, bn_name, residual_end):
        """The gamma initializer of the BatchNorm ``bn_name``: "zeros" where it ends a
        residual branch and ``last_gamma`` is on, else "ones"."""
        if residual_end:
            self.residual_ends.append(bn_name)
        return "zeros" if residual_end and self.last_gamma else "ones"

    def check_last_gamma(self, name):
        """After a build: ``last_gamma`` needs a BatchNorm that ends a residual branch."""
        if self.last_gamma and not self.residual_ends:
            raise ValueError(f"last_gamma: {name} has no BatchNorm ending a residual branch "
                             f"(pre-activation and dense networks)")

    def act(self, x, kind):
        return activation(self.F, x, kind)

    def pool(self, x, pool_type, kernel, stride, padding=0):
        return pool(self.F, x, pool_type, kernel, stride, padding)

    def global_pool(self, x):
        return global_pool(self.F, x)

    def add(self, a, b):
        return add(self.F, a, b)

    def concat(self, *pairs):
        return concat(self.F, *pairs)

    def dropout(self, x, p):
        """Dropout of the high branch (heads only see one); identity when ``p`` is 0."""
        return x if not p else (self.F.Dropout(x[0], p=p), x[1])
