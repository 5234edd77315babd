"""Independent NumPy reference of Octave Convolution (paper Eq. 4), for the tests only.

Written from the paper and the project's documented rules, without the package:
Y_h = f(X_h; W_hh) + upsample(f(X_l; W_lh)),  Y_l = f(X_l; W_ll) + f(pool(X_h); W_hl);
stride 2 = 2x2 average pooling of every input first (l->h then needs no upsampling);
pooling rounds up and averages only the pixels inside the map; the upsampled map is
cropped to the high-frequency size. Videos (N, C, T, H, W): the same in height and
width for every frame; every path convolves in time with the layer's temporal stride.
"""
import numpy as np


def conv2d(x, w, padding, bias=None):
    """Stride-1 grouped convolution; groups = in channels / weight in channels."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    groups = c // cg
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = h + 2 * ph - kh + 1, wd + 2 * pw - kw + 1
    og = o // groups
    out = np.zeros((n, o, oh, ow))
    for g in range(groups):
        xs, ws = xp[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                out[:, g * og:(g + 1) * og] += np.einsum(
                    "ncij,oc->noij", xs[:, :, i:i + oh, j:j + ow], ws[:, :, i, j])
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv3d(x, w, padding, temporal_stride=1, bias=None):
    """Grouped 3-D convolution, stride 1 in height and width, ``temporal_stride`` in
    time: each output frame is a sum of 2-D convolutions of the frames it covers."""
    kt, pt = w.shape[2], padding[0]
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pt), (0, 0), (0, 0)))
    frames = range(0, xp.shape[2] - kt + 1, temporal_stride)
    out = np.stack([sum(conv2d(xp[:, :, t + i], w[:, :, i], padding[1:]) for i in range(kt))
                    for t in frames], axis=2)
    if bias is not None:
        out += bias[None, :, None, None, None]
    return out


def avg_pool2(x):
    """2x2/2 average pooling of the last two axes; the last row/column of an odd map is
    averaged alone."""
    h, w = x.shape[-2:]
    out = np.zeros(x.shape[:-2] + ((h + 1) // 2, (w + 1) // 2))
    for i in range(out.shape[-2]):
        for j in range(out.shape[-1]):
            out[..., i, j] = x[..., 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(-2, -1))
    return out


def upsample2(x, size):
    """Nearest 2x upsampling of the last two axes cropped to ``size`` (h, w)."""
    up = x.repeat(2, axis=-2).repeat(2, axis=-1)
    return up[..., :size[0], :size[1]]


def octconv(xh, xl, weights, stride, padding, biases=None, temporal_stride=1):
    """Eq. 4. ``weights``/``biases`` map 'h2h', 'h2l', 'l2h', 'l2l' to arrays; a path
    whose weight is absent does not exist. 5-D weights make a video layer. Returns
    (yh, yl), yl None without low output."""
    biases = biases or {}
    down = avg_pool2 if stride == 2 else (lambda t: t)
    if weights["h2h"].ndim == 5:
        f = lambda x, p: conv3d(x, weights[p], padding, temporal_stride, biases.get(p))
    else:
        f = lambda x, p: conv2d(x, weights[p], padding, biases.get(p))
    yh = f(down(xh), "h2h")
    if "l2h" in weights:
        t = f(xl, "l2h")
        yh = yh + (t if stride == 2 else upsample2(t, yh.shape[-2:]))
    yl = None
    if "h2l" in weights:
        yl = f(avg_pool2(down(xh)), "h2l")
    if "l2l" in weights:
        t = f(down(xl), "l2l")
        yl = t if yl is None else yl + t
    return yh, yl
