"""The frequency analysis (tools/frequency.py, octconv/frequency.py) on inputs whose
spectra are known by construction, and on a trained demo network."""
import json
import os

import numpy as np
import pytest

from helpers import run_script
from octconv import gluon as G
from octconv.frequency import analyze, energy_above, power_spectrum, radial_frequency, record_pairs


def checkerboard(size):
    i, j = np.indices((size, size))
    return np.where((i + j) % 2, 1.0, -1.0)


def test_checkerboard_puts_its_energy_at_the_corner_frequency():
    """(-1)^(i+j) is the (0.5, 0.5) cycles-per-pixel wave: radius 0.71."""
    power = power_spectrum(checkerboard(16)[None])
    peak = np.unravel_index(power.argmax(), power.shape)
    assert radial_frequency(power.shape)[peak] == pytest.approx(np.sqrt(0.5))
    assert energy_above(power, 0.6) > 0.95


def test_low_pass_image_keeps_its_energy_at_low_frequencies():
    """A constant (removed) plus waves of 1/32 and 1/16 cycle per pixel."""
    y, x = np.indices((32, 32))
    image = 3 + np.cos(2 * np.pi * x / 32) + 0.5 * np.sin(2 * np.pi * (x + y) / 16)
    power = power_spectrum(image[None, None])
    assert energy_above(power, 0.125) < 0.02


@pytest.mark.parametrize("scale, expected", [(1, 0.25), (2, 0.125)])
def test_a_wave_of_a_low_map_is_read_at_half_its_own_frequency(scale, expected):
    """A quarter-cycle-per-sample wave is at 0.25 cycles per high-resolution pixel on a
    high map, at 0.125 on a low map (whose pixel spans two)."""
    x = np.indices((16, 16))[1]
    power = power_spectrum(np.cos(2 * np.pi * 0.25 * x)[None])
    peak = np.unravel_index(power.argmax(), power.shape)
    assert radial_frequency(power.shape, scale)[peak] == pytest.approx(expected)
    assert energy_above(power, expected + 0.07, scale) < 0.2


def test_energy_within_the_low_band_ignores_what_lies_above_it():
    """A 1/16-cycle wave plus a checkerboard: above 0.125 lies the checkerboard, which
    the band below 0.3 leaves out."""
    wave = np.cos(2 * np.pi * np.indices((32, 32))[1] / 16) + checkerboard(32)
    power = power_spectrum(wave[None])
    assert energy_above(power, 0.125, band=0.3) < 0.02
    assert energy_above(power, 0.125) > 0.5


def test_recorded_pairs_are_the_layers_outputs():
    import mxnet as mx
    net = G.get_model("resnet10_v2_mini", alpha=0.25, classes=10)
    net.initialize(mx.init.Xavier())
    x = mx.nd.array(np.random.RandomState(0).randn(2, 3, 40, 40))
    pairs = record_pairs(net, x, ["L2_B01_conv2"])
    hi, lo = pairs["L2_B01_conv2"]
    layer_input = record_pairs(net, x, ["L2_B01_conv1"])["L2_B01_conv1"]
    bn_relu = lambda pair: net.layers["L2_B01_conv2_bn"](*[mx.nd.array(t) for t in pair])
    with mx.autograd.predict_mode():
        want = net.layers["L2_B01_conv2"](*[mx.nd.relu(t) for t in bn_relu(layer_input)])
    np.testing.assert_allclose(hi, want[0].asnumpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lo, want[1].asnumpy(), rtol=1e-5, atol=1e-5)
    assert lo.shape[2:] == (5, 5) and hi.shape[2:] == (10, 10)
    report = analyze(pairs)["L2_B01_conv2"]
    assert report["low"]["size"] == [5, 5] and report["high"]["channels"] == hi.shape[1]
    with pytest.raises(ValueError, match="L5_B01_conv1.*choose among"):
        record_pairs(net, x, ["L5_B01_conv1"])


def test_trained_network_low_group_holds_less_high_frequency_energy(trained_run, digits,
                                                                    tmp_path):
    out = tmp_path / "freq"
    checkpoint = os.path.relpath(trained_run)  # recorded as given, not as this machine's path
    result = run_script("tools/frequency.py", checkpoint, "--data",
                        os.path.join(digits, "val"), "--size", "64", "--images", "32",
                        "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.load(open(out / "frequency.json"))
    assert report["images"] == 32 and len(report["layers"]) == 3
    assert report["checkpoint"] == checkpoint
    for layer, groups in report["layers"].items():
        high, low = groups["high"]["above"]["0.25"], groups["low"]["above"]["0.25"]
        assert low < high, (layer, low, high)
    assert open(out / "frequency.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    bad = run_script("tools/frequency.py", trained_run, "--data", os.path.join(digits, "val"),
                     "--layers", "L2_B01_conv9", "--out", out)
    assert bad.returncode == 2 and "not an OctConv layer" in bad.stderr
