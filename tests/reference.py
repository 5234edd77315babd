"""Independent NumPy reference of Octave Convolution (paper Eq. 4), for the tests only.

Written from the paper and the project's documented rules, without the package:
Y_h = f(X_h; W_hh) + upsample(f(X_l; W_lh)),  Y_l = f(X_l; W_ll) + f(pool(X_h); W_hl);
stride 2 = 2x2 average pooling of every input first (l->h then needs no upsampling);
pooling rounds up and averages only the pixels inside the map; the upsampled map is
cropped to the high-frequency size.
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


def avg_pool2(x):
    """2x2/2 average pooling; the last row/column of an odd map is averaged alone."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, (h + 1) // 2, (w + 1) // 2))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(2, 3))
    return out


def upsample2(x, size):
    """Nearest 2x upsampling cropped to ``size`` (h, w)."""
    up = x.repeat(2, axis=2).repeat(2, axis=3)
    return up[:, :, :size[0], :size[1]]


def octconv(xh, xl, weights, stride, padding, biases=None):
    """Eq. 4. ``weights``/``biases`` map 'h2h', 'h2l', 'l2h', 'l2l' to arrays; a path
    whose weight is absent does not exist. Returns (yh, yl), yl None without low output."""
    biases = biases or {}
    down = avg_pool2 if stride == 2 else (lambda t: t)
    f = lambda x, p: conv2d(x, weights[p], padding, biases.get(p))
    yh = f(down(xh), "h2h")
    if "l2h" in weights:
        t = f(xl, "l2h")
        yh = yh + (t if stride == 2 else upsample2(t, yh.shape[2:]))
    yl = None
    if "h2l" in weights:
        yl = f(avg_pool2(down(xh)), "h2l")
    if "l2l" in weights:
        t = f(down(xl), "l2l")
        yl = t if yl is None else yl + t
    return yh, yl
