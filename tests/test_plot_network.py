"""tools/plot_network.py: a text summary always, a drawing with graphviz."""
import shutil

import pytest

from helpers import run_script


def run(*args):
    return run_script("tools/plot_network.py", *args)


def test_text_summary_lists_octave_paths_and_the_release_parameter_count():
    out = run("--model", "mobilenet_v1_075", "--alpha", "0.375").stdout
    assert "L2_B0_conv1-l2l" in out and "L1_B1_conv2-h2l" in out
    # the release's own count (golden_complexity.json: gluon/mobilenet_v1_075/0.375)
    assert "Total params: 2585560" in out


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
