"""tools/plot_network.py: a text summary always, a drawing with graphviz."""
import shutil

import pytest

from helpers import run_script
from octconv.complexity import count_model
from octconv.specs import get_spec


def run(*args):
    return run_script("tools/plot_network.py", *args)


def test_text_summary_lists_octave_paths_and_the_release_parameter_count():
    out = run("--model", "mobilenet_v1_075", "--alpha", "0.375").stdout
    assert "L2_B0_conv1-l2l" in out and "L1_B1_conv2-h2l" in out
    # the release's own count (golden_complexity.json: gluon/mobilenet_v1_075/0.375)
    assert "Total params: 2585560" in out


def test_unequal_sides_and_a_video_network():
    """``--size HEIGHTxWIDTH`` sets each side: ResNet-26's 7x7 stride-2 convolution (pad
    3) and 3x3 stride-2 max pooling (pad 1) give maps of 24 x 32 and 12 x 16 from 48 x 64
    px. A video network's summary takes a clip of the frames its spec counts, and its
    total is the Gluon API's parameter count."""
    conv = lambda side, kernel, pad: (side + 2 * pad - kernel) // 2 + 1
    out = run("--model", "resnet26_v2", "--size", "48x64").stdout
    layers = [line.split()[:2] for line in out.splitlines() if "(" in line.split(" ")[0]]
    first = lambda kind: next(shape for layer, shape in layers if layer.endswith(f"({kind})"))
    height, width = conv(48, 7, 3), conv(64, 7, 3)
    assert first("Convolution") == f"64x{height}x{width}"
    assert first("Pooling") == f"64x{conv(height, 3, 1)}x{conv(width, 3, 1)}"
    out = run("--model", "i3d_resnet10_mini", "--alpha", "0.25", "--size", "32x48")
    assert out.returncode == 0, out.stderr
    frames = get_spec("i3d_resnet10_mini").input_shape(1)[2]
    assert f"3x{frames}x32x48" in out.stdout
    params = count_model("i3d_resnet10_mini", 0.25, "gluon", (32, 48)).params
    assert f"Total params: {params}" in out.stdout


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_drawing_with_graphviz(tmp_path):
    out = run("--model", "resnet26_v2", "--alpha", "0.25", "--out", str(tmp_path / "net.png"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "net.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_are_named():
    out = run("--model", "resnet26_v2", "--out", "net.bmp")
    assert out.returncode == 2
    assert ("--out must end in .pdf, .png or .svg" in out.stderr
            or "needs graphviz's 'dot' program" in out.stderr)
    out = run("--model", "resnet26_v2", "--alpha", "-0.5")
    assert out.returncode == 2 and "alpha must be in [0, 1), got -0.5" in out.stderr
