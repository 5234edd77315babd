"""Pair operations written once for both MXNet APIs, for images and videos.

Every function takes ``F`` (``mxnet.symbol`` or ``mxnet.ndarray``, as a Gluon
``hybrid_forward`` receives it) and works on pairs ``(hi, lo)`` with ``lo=None`` when
there is no low-frequency part. ``dims`` is 2 for images (N, C, H, W) and 3 for videos
(N, C, T, H, W), where the octave is spatial only: the low map has every frame at half
the height and width, never fewer frames. Operations with parameters (convolution, BatchNorm,
squeeze-excitation) take callables that apply them, so the Symbol API and the Gluon
API only differ in where parameters live.
"""
from octconv.unit import branch_widths

__all__ = ["avg_pool2", "upsample2_like", "octconv_forward", "check_pair", "activation",
           "pool", "global_pool", "concat", "add", "merge", "squeeze_excitation", "is_array",
           "check_path_input", "window", "same_padding", "CEIL_POOL_PAD", "CEIL_POOL_PAD_3D",
           "ACTIVATIONS", "PairOps"]

# ``pad_width`` (before, after for N, C, H, W) of the edge padding that, followed by a
# 2x2/2 'valid' pooling, makes a ceil-mode pooling that works down to 1 pixel
# (:func:`_pool2_ceil`); the graph readers recognize the pair by it
# (:meth:`octconv.graph.Graph.pooled_entry`).
CEIL_POOL_PAD = (0, 0, 0, 0, 0, 1, 0, 1)
CEIL_POOL_PAD_3D = (0, 0) + CEIL_POOL_PAD  # videos: nothing in time


def avg_pool2(F, x, dims=2):
    """2x2/2 average pooling of height and width to ceil(n / 2) (any n >= 1), averaging
    only the pixels each window covers (see :func:`_pool2_ceil`); frames stay apart."""
    return _pool2_ceil(F, x, "avg", dims)


def _pool2_ceil(F, x, pool_type, dims=2):
    """2x2/2 pooling rounding up, for every size down to 1 pixel.

    MXNet's 'full' (ceil) convention refuses a dimension of 1 (the kernel exceeds it), so
    the map is edge-padded by one row and one column at its end and pooled in the 'valid'
    convention: on an odd dimension the last window holds a pixel and its copy, whose
    average and maximum are the pixel's, exactly what 'full' gives; on an even one no
    window reaches the copy. The TVM lowering and the ONNX export fold the pair back into
    one ceil-mode pooling.
    """
    padded = F.pad(x, mode="edge", pad_width=CEIL_POOL_PAD if dims == 2 else CEIL_POOL_PAD_3D)
    window = (1,) * (dims - 2) + (2, 2)
    return F.Pooling(padded, kernel=window, stride=window, pool_type=pool_type,
                     pooling_convention="valid")


def upsample2_like(F, x, like, dims=2):
    """Nearest 2x upsampling of the height and width of ``x``, cropped to those of
    ``like``: MXNet's UpSampling for images; for videos, which it does not take, the
    last axis doubled twice (a new axis of 2, broadcast, merged into it), with height
    and width swapped in between, operators that ONNX has too."""
    if dims == 2:
        up = F.UpSampling(x, scale=2, sample_type="nearest", num_args=1)
        return F.slice_like(up, like, axes=(2, 3))

    def double_last(t):
        copies = F.broadcast_axis(F.expand_dims(t, axis=5), axis=5, size=2)
        return F.reshape(copies, shape=(0, 0, 0, 0, -1))

    swap = (0, 1, 2, 4, 3)
    up = F.transpose(double_last(F.transpose(double_last(x), axes=swap)), axes=swap)
    return F.slice_like(up, like, axes=(3, 4))


def is_array(x):
    """True for an NDArray (imperative mode, shapes known), False for a Symbol."""
    return hasattr(x, "shape") and not hasattr(x, "list_outputs")


def check_pair(hi, lo, in_channels, has_low, name, dims=None):
    """Raise ValueError unless ``(hi, lo)`` fits a layer declared with these inputs.

    Presence of ``lo`` is always checked; channel counts, the low map's size (the high
    map's frames, ``ceil(size / 2)`` in height and width) and, given ``dims``, the
    tensors' rank (``dims`` + 2) are checked when the tensors have shapes (imperative
    mode).
    """
    if has_low and lo is None:
        raise ValueError(f"{name}: expects a low-frequency input (alpha_in > 0), got lo=None")
    if not has_low and lo is not None:
        raise ValueError(f"{name}: declared without a low-frequency input, got a lo tensor")
    if not is_array(hi):
        return
    layout = "N x C x H x W" if dims == 2 else "N x C x T x H x W"
    for tensor, branch in ((hi, "high"), (lo, "low")):
        if dims and tensor is not None and len(tensor.shape) != dims + 2:
            raise ValueError(f"{name}: a {dims}-D layer takes {layout} ({dims + 2}-D) "
                             f"tensors, got a {len(tensor.shape)}-D {branch} input "
                             f"{tuple(tensor.shape)}")
    widths = (hi.shape[1], lo.shape[1] if lo is not None else 0)
    if in_channels != (0, 0) and widths != tuple(in_channels):
        raise ValueError(f"{name}: input has (high, low) channels {widths}, declared "
                         f"{tuple(in_channels)}")
    if lo is not None:
        expected = tuple(hi.shape[2:-2]) + tuple((s + 1) // 2 for s in hi.shape[-2:])
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
    then skips its upsampling). Pooling and upsampling act on height and width only.
    Returns ``(Y_h, Y_l)``, ``Y_l`` None without low output.
    """
    pooled = {("h", 0): hi, ("l", 0): lo}

    def source(branch, pools):
        if (branch, pools) not in pooled:
            pooled[(branch, pools)] = avg_pool2(F, source(branch, pools - 1), plan.dims)
        return pooled[(branch, pools)]

    outputs = {"h": None, "l": None}
    for path in plan.paths:  # h2h comes first, so l2h can be cropped to it
        x = source(path.source, path.pools)
        if is_array(x):
            check_path_input(path.name, x.shape[2:], plan.kernel_size, plan.padding)
        y = conv(path, x)
        if path.upsample:
            y = upsample2_like(F, y, outputs["h"], plan.dims)
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


def window(value, dims):
    """An int or a ``dims``-tuple (a kernel, stride or padding) as a ``dims``-tuple."""
    return (value,) * dims if isinstance(value, int) else tuple(value)


def same_padding(kernel, dims):
    """The padding that keeps the size of an odd ``kernel`` (an int or a tuple)."""
    return tuple(k // 2 for k in window(kernel, dims))


def pool(F, pair, pool_type, kernel, stride, padding=0, dims=2):
    """Max or average pooling of each branch; ``kernel``, ``stride``, ``padding`` are ints
    (the same in every dimension) or ``dims``-tuples, equal in height and width.

    Every branch comes out at ceil(size / stride) in height and width, so a low map
    stays half its high map at any size: rounding is down when ``kernel == 2 * padding
    + 1`` (e.g. 3x3/2 pad 1) and up when ``kernel == stride + 2 * padding`` (e.g. 2x2/2,
    which also works on 1-pixel maps; the others need maps of at least their kernel);
    other shapes raise, unless there is no low branch (then they round down, as
    MXNet's default). Time (videos) is pooled in the same convention. Averages exclude
    padding.
    """
    if pool_type not in ("avg", "max"):
        raise ValueError(f"pool_type must be 'avg' or 'max', got {pool_type!r}")
    kernel, stride, padding = (window(v, dims) for v in (kernel, stride, padding))
    if len({len(kernel), len(stride), len(padding), dims}) != 1 or \
            len({(k, s, p) for k, s, p in list(zip(kernel, stride, padding))[-2:]}) != 1:
        raise ValueError(f"pair pooling takes {dims} values per window, equal in height and "
                         f"width, got kernel={kernel}, stride={stride}, padding={padding}")
    k, s, p = kernel[-1], stride[-1], padding[-1]
    if k == s == 2 and p == 0 and kernel[:-2] == stride[:-2] == (1,) * (dims - 2):
        return _map(lambda x: _pool2_ceil(F, x, pool_type, dims), pair)
    if k == 2 * p + 1 or (pair[1] is None and k != s + 2 * p):
        convention = "valid"
    elif k == s + 2 * p:
        convention = "full"
    else:
        raise ValueError(
            f"pair pooling needs kernel == 2 * padding + 1 or kernel == stride + 2 * padding "
            f"in height and width to keep the low map at half the high map, got "
            f"kernel={kernel}, stride={stride}, padding={padding}")
    return _map(lambda x: F.Pooling(x, kernel=kernel, stride=stride, pad=padding,
                                    pool_type=pool_type, pooling_convention=convention,
                                    count_include_pad=False),
                pair)


def global_pool(F, pair, pool_type="avg", dims=2):
    """Global pooling of each branch to N x C x 1 x 1 (x 1 for videos)."""
    return _map(lambda x: F.Pooling(x, kernel=(1,) * dims, global_pool=True,
                                    pool_type=pool_type), pair)


def concat(F, *pairs, dims=2):
    """Concatenate pairs along channels, high with high and low with low.

    The no-op reshape moves the result to plain memory layout: without it, MXNet
    1.9's oneDNN backward crashes (SIGFPE or "could not construct a sub-memory") when
    such a concatenation of small low-frequency maps feeds BatchNorm and a convolution,
    as in Oct-DenseNet.
    """
    his = [hi for hi, _ in pairs]
    los = [lo for _, lo in pairs if lo is not None]

    def cat(xs):
        return xs[0] if len(xs) == 1 else F.reshape(F.concat(*xs, dim=1),
                                                    shape=(0,) * (dims + 2))

    return cat(his), (cat(los) if los else None)


def add(F, a, b):
    """Element-wise sum of two pairs of the same structure (residual connection)."""
    if (a[1] is None) != (b[1] is None):
        raise ValueError("cannot add a pair with a low branch to a pair without one")
    return a[0] + b[0], (None if a[1] is None else a[1] + b[1])


def merge(F, pair, dims=2):
    """One tensor at high resolution: concat(hi, nearest-upsampled lo cropped to hi)."""
    hi, lo = pair
    return hi if lo is None else F.concat(hi, upsample2_like(F, lo, hi, dims), dim=1)


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
    exchange paths in ``exchange`` (see :func:`octconv.unit.plan_octconv`). ``dims`` is
    2 for image networks, 3 for video networks."""

    def __init__(self, F, last_gamma=False, exchange=("h2l", "l2h"), dims=2):
        self.F = F
        self.last_gamma = last_gamma
        self.exchange = exchange
        self.dims = dims
        self.residual_ends = []  # BN layers that end a residual branch

    def gamma_init(self, bn_name, residual_end, zero_gamma=False):
        """The gamma initializer of the BatchNorm ``bn_name``: "zeros" where it ends a
        residual branch and ``last_gamma`` is on, or where ``zero_gamma`` asks for it
        (a non-local block's output), else "ones"."""
        if residual_end:
            self.residual_ends.append(bn_name)
        return "zeros" if zero_gamma or (residual_end and self.last_gamma) else "ones"

    def check_last_gamma(self, name):
        """After a build: ``last_gamma`` needs a BatchNorm that ends a residual branch."""
        if self.last_gamma and not self.residual_ends:
            raise ValueError(f"last_gamma: {name} has no BatchNorm ending a residual branch "
                             f"(pre-activation and dense networks)")

    def act(self, x, kind):
        return activation(self.F, x, kind)

    def pool(self, x, pool_type, kernel, stride, padding=0):
        return pool(self.F, x, pool_type, kernel, stride, padding, self.dims)

    def global_pool(self, x):
        return global_pool(self.F, x, dims=self.dims)

    def add(self, a, b):
        return add(self.F, a, b)

    def concat(self, *pairs):
        return concat(self.F, *pairs, dims=self.dims)

    def frames(self, x, step):
        """Every ``step``-th frame of a clip pair (from the first)."""
        return _map(lambda t: self.F.slice(t, begin=(None,) * 5, end=(None,) * 5,
                                           step=(1, 1, step, 1, 1)), x)

    def dropout(self, x, p):
        """Dropout of the high branch (heads only see one); identity when ``p`` is 0."""
        return x if not p else (self.F.Dropout(x[0], p=p), x[1])

    def nonlocal_block(self, x, name, channels, alpha):
        """A non-local block (Wang et al. 2018, embedded Gaussian, as their code) on each
        branch of a ``channels``-wide pair split by ``alpha``: every position of a branch
        attends to the positions of the same branch, over all its frames.

        theta: 1x1 conv to half the width ; phi, g: 2x2 max-pool of height and width
        (ceil), then 1x1 conv to half the width ; softmax(theta^T phi / sqrt(width)) ;
        g weighted by it -> 1x1 conv back to the width -> BN (gamma 0 at start) ; plus
        the input. Convolutions have biases; names ``<name>-h_theta``, ...
        """
        F, dims = self.F, self.dims
        outputs = []
        for branch, tensor, width in zip("hl", x, branch_widths(channels, alpha)):
            if tensor is None:
                outputs.append(None)
                continue
            inner = max(width // 2, 1)
            conv = lambda t, part, c_in, c_out: self.plain_conv(
                (t, None), f"{name}-{branch}_{part}", c_in, c_out, 1, 1, 0, use_bias=True)[0]
            pooled = _pool2_ceil(F, tensor, "max", dims)
            theta = conv(tensor, "theta", width, inner)
            phi = F.reshape(conv(pooled, "phi", width, inner), shape=(0, 0, -1))
            g = F.reshape(conv(pooled, "g", width, inner), shape=(0, 0, -1))
            affinity = F.batch_dot(F.reshape(theta, shape=(0, 0, -1)), phi, transpose_a=True)
            weights = F.softmax(affinity * inner ** -0.5, axis=-1)
            y = F.reshape_like(F.batch_dot(g, weights, transpose_b=True), theta)
            y = conv(y, "out", inner, width)
            y = self.bn((y, None), f"{name}-{branch}_bn", width, 0.0, zero_gamma=True)[0]
            outputs.append(tensor + y)
        return tuple(outputs)
