"""ImageNet-to-video inflation: the weights of a 2-D ``resnet50_v1b`` onto a video
ResNet-50 of the same alpha (the "ImageNet pretrain" of the paper's Table 6).

The video networks name their layers as ``resnet50_v1b`` does (docs/ARCHITECTURES.md,
section 6.1), so every image parameter has a video parameter of the same name: a
convolution kernel (O, I, k, k) becomes (O, I, t, k, k) and everything else (BN,
classifier) is copied. Two ways to spread a kernel over ``t`` frames:

* ``mean`` (I3D, Carreira and Zisserman 2017): ``t`` copies, each divided by ``t``;
* ``center``: the kernel on the middle frame, zeros on the others.

On a clip of one image repeated, ``center`` gives exactly the image network's output;
``mean`` does too where no temporal padding reaches (zero padding at the clip's ends
sees fewer frames). Parameters the image network has no counterpart of (non-local
blocks) keep the video network's own initialization.
"""
import numpy as np

__all__ = ["INFLATION_MODES", "inflate_kernel", "inflate"]

INFLATION_MODES = ("mean", "center")


def inflate_kernel(kernel, frames, mode="mean"):
    """A 2-D kernel (O, I, k, k) spread over ``frames`` as a 3-D one (O, I, frames, k, k)."""
    if mode not in INFLATION_MODES:
        raise ValueError(f"inflation mode must be one of {', '.join(INFLATION_MODES)}, "
                         f"got {mode!r}")
    kernel = np.asarray(kernel)
    if mode == "mean":
        return np.repeat(kernel[:, :, None], frames, axis=2) / frames
    out = np.zeros(kernel.shape[:2] + (frames,) + kernel.shape[2:], kernel.dtype)
    out[:, :, frames // 2] = kernel
    return out


def inflate(image_params, video_shapes, mode="mean"):
    """``{name: array}`` for the video parameters ``video_shapes`` (``{name: shape}``) that
    ``image_params`` (``{name: array}``) holds, inflated; ValueError naming the first
    image parameter the video network lacks or whose shape does not inflate to it."""
    inflated = {}
    for name, value in image_params.items():
        value = np.asarray(value)
        if name not in video_shapes:
            raise ValueError(f"image parameter {name} {value.shape} has no counterpart in "
                             f"the video network (is the image network resnet50_v1b?)")
        shape = tuple(video_shapes[name])
        if value.ndim == 4 and len(shape) == 5:
            value = inflate_kernel(value, shape[2], mode)
        if value.shape != shape:
            raise ValueError(f"image parameter {name} has shape {value.shape} after "
                             f"inflation, the video network needs {shape} (another alpha "
                             f"or width?)")
        inflated[name] = value
    return inflated
