"""Fourier analysis of the high- and low-frequency maps of a network (the paper's Fig. 4).

The paper shows that the low-frequency group of an Oct-ResNet holds no high-frequency
energy while the high-frequency group holds both (Chen et al. 2019, Sec. 4.2, Fig. 4).
Here that is measured, not only pictured:

* :func:`record_pairs` runs a Gluon zoo network on a batch and keeps the ``(hi, lo)``
  output of chosen OctConv layers.
* :func:`power_spectrum` averages the centered 2-D power spectrum of every map of a
  group: each map minus its mean (its DC term), times a Hann window (so the map's
  edges do not read as high frequencies), then ``|FFT|^2``.
* Frequencies are in cycles per pixel of the *high-resolution* grid, so the two groups
  are comparable: a low map's pixel spans two high pixels, so its frequencies are half
  its own (``scale=2``) and end at 0.25, where the high group's go to 0.5.
* :func:`energy_above` is the share of a group's energy at radial frequency above a
  radius; :func:`analyze` reports it over all frequencies and within the band both
  groups can hold (below 0.25), where the comparison is not given by the resolution
  alone.
"""
import numpy as np

__all__ = ["octave_layers", "record_pairs", "power_spectrum", "radial_frequency",
           "energy_above", "analyze", "LOW_BAND", "RADII"]

LOW_BAND = 0.25   # the low group's Nyquist frequency, in cycles per high-resolution pixel
RADII = (0.125, 0.25, 0.375)  # radii reported by analyze(), same unit


def octave_layers(net):
    """Names of the OctConv layers of the zoo network ``net`` with a low-frequency output,
    in build order."""
    from octconv.gluon import OctConv2D
    return [name for name, block in net.layers.items()
            if isinstance(block, OctConv2D) and block.plan.channels[1] > 0]


def record_pairs(net, x, layers):
    """``{layer: (hi, lo)}`` NumPy outputs of the OctConv ``layers`` of the zoo network
    ``net`` (not hybridized) on the batch ``x``, in inference mode."""
    import mxnet as mx
    unknown = sorted(set(layers) - set(octave_layers(net)))
    if unknown:
        raise ValueError(f"not an OctConv layer with a low-frequency output: "
                         f"{', '.join(unknown)}; choose among {', '.join(octave_layers(net))}")
    recorded, hooks = {}, []
    for name in layers:
        def keep(block, inputs, outputs, name=name):
            recorded[name] = tuple(o.asnumpy() for o in outputs)
        hooks.append(net.layers[name].register_forward_hook(keep))
    try:
        with mx.autograd.predict_mode():
            net(x)
    finally:
        for hook in hooks:
            hook.detach()
    return {name: recorded[name] for name in layers}


def radial_frequency(shape, scale=1):
    """Radial frequency of each bin of a centered ``shape`` (h, w) spectrum, in cycles per
    high-resolution pixel for maps whose pixel spans ``scale`` of them."""
    fy = np.fft.fftshift(np.fft.fftfreq(shape[0]))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(shape[1]))[None, :]
    return np.sqrt(fy ** 2 + fx ** 2) / scale


def _hann(n):
    """A Hann window of ``n`` points without its zero end points (so a 1- or 2-pixel map
    keeps its values)."""
    return np.hanning(n + 2)[1:-1]


def power_spectrum(maps):
    """Mean centered power spectrum of ``maps`` (..., h, w): each map minus its mean,
    Hann-windowed (:func:`_hann`), ``|FFT2|^2``, zero frequency in the middle."""
    maps = np.asarray(maps, dtype=np.float64)
    h, w = maps.shape[-2:]
    window = np.outer(_hann(h), _hann(w))
    flat = maps.reshape(-1, h, w)
    flat = (flat - flat.mean(axis=(1, 2), keepdims=True)) * window
    power = np.abs(np.fft.fft2(flat)) ** 2
    return np.fft.fftshift(power.mean(axis=0))


def energy_above(power, radius, scale=1, band=None):
    """Share of the energy of the centered spectrum ``power`` at radial frequencies above
    ``radius`` (cycles per high-resolution pixel); with ``band``, of the energy at or
    below ``band`` only. 0 for a spectrum without energy."""
    freq = radial_frequency(power.shape, scale)
    inside = np.ones_like(freq, dtype=bool) if band is None else freq <= band + 1e-12
    total = power[inside].sum()
    return float(power[inside & (freq > radius + 1e-12)].sum() / total) if total > 0 else 0.0


def analyze(pairs, radii=RADII):
    """For each layer of ``pairs`` (``{layer: (hi, lo)}``) and each group: the share of
    its energy above each of ``radii``, over all frequencies (``above``) and within the
    band below :data:`LOW_BAND` (``above_in_low_band``), and the map size."""
    report = {}
    for layer, (hi, lo) in pairs.items():
        report[layer] = {}
        for group, maps, scale in (("high", hi, 1), ("low", lo, 2)):
            power = power_spectrum(maps)
            report[layer][group] = dict(
                size=list(maps.shape[-2:]), channels=int(maps.shape[1]),
                above={str(r): energy_above(power, r, scale) for r in radii},
                above_in_low_band={str(r): energy_above(power, r, scale, LOW_BAND)
                                   for r in radii})
    return report
