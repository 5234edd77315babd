"""The video networks of Table 6 in both APIs: the paper's figures, Symbol equal to
Gluon, clips of any length and size, gradients, bad inputs, the non-local block against
NumPy, and ImageNet-to-video inflation."""
import dataclasses
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from helpers import FAN_IN, randomize, run_script
from octconv import gluon as G
from octconv import symbol as S
from octconv.complexity import count_symbol, paper_flops, trace_gluon
from octconv.paper import VIDEO_FIGURES
from octconv.specs import MODELS, get_spec, register

VIDEO = [n for n in G.list_models() if get_spec(n).dims == 3]

# Printed figures no placement of the octave gives with the .1 rows' rule, pinned at this
# project's count (docs/ARCHITECTURES.md 6.2 tells what was tried).
TABLE6_GAPS = {
    ("i3d_resnet50", 0.2): 23_198_863_656,
    ("i3d_resnet50", 0.5): 17_411_723_152,
    ("i3d_nl_resnet50", 0.1): 29_793_543_120,
    ("slowfast_resnet50", 0.1): 25_134_436_132,
    ("slowfast_resnet50", 0.2): 22_701_995_968,
}


def test_the_video_zoo_is_table_6():
    assert set(VIDEO) - {"c2d_resnet10_mini", "i3d_resnet10_mini"} == {
        name for name, _ in VIDEO_FIGURES}


def test_slowfast_counts_its_papers_figure_at_256_px():
    """Table 6's footnote: the SlowFast paper's 4x16 ResNet-50 costs 36.1 G at 256 px."""
    assert round(paper_flops("slowfast_resnet50", 0.0, 256) / 1e9, 1) == 36.1


@pytest.mark.parametrize("name, alpha", sorted(VIDEO_FIGURES))
def test_table_6_to_its_printed_rounding_in_both_apis(name, alpha):
    figure = paper_flops(name, alpha)
    net = G.get_model(name, alpha=alpha, classes=400)
    assert paper_flops(name, alpha, sym=trace_gluon(net)) == figure
    if (name, alpha) in TABLE6_GAPS:
        assert figure == TABLE6_GAPS[(name, alpha)]
    else:
        assert round(figure / 1e9, 1) == VIDEO_FIGURES[(name, alpha)]


def test_baseline_multiply_adds_follow_the_frames_and_the_inflation():
    """C2D is the 2-D ResNet-50 per frame: its multiply-adds, computed here from the
    layer shapes, for 8 frames in the stem and L1, 4 after the temporal pool."""
    stem = 64 * 3 * 49 * 112 * 112 * 8
    per_frame = {56: 0, 28: 0, 14: 0, 7: 0}
    size, in_c = 55, 64
    for stage, (units, mid, out) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512),
                                                  (256, 512, 1024, 2048))):
        for unit in range(units):
            stride = 2 if unit == 0 and stage else 1
            out_size = -(-size // stride)
            macs = in_c * mid * size * size + mid * mid * 9 * out_size ** 2 \
                + mid * out * out_size ** 2 + (in_c * out * out_size ** 2 if unit == 0 else 0)
            per_frame[{55: 56, 28: 28, 14: 14, 7: 7}[out_size]] += macs
            size, in_c = out_size, out
    want = stem + 8 * per_frame[56] + 4 * (per_frame[28] + per_frame[14] + per_frame[7]) \
        + 2048 * 400
    counted = count_symbol(S.get_symbol("c2d_resnet50", num_classes=400),
                           {"data": (1, 3, 8, 224, 224), "softmax_label": (1,)})
    assert counted.macs == want


def bind(sym, params, shape):
    arg_shapes, _, _ = sym.infer_shape(data=shape)
    args = {n: mx.nd.array(params[n], dtype="float64") if n in params else
            mx.nd.zeros(s, dtype="float64")
            for n, s in zip(sym.list_arguments(), arg_shapes)}
    aux = {n: mx.nd.array(params[n], dtype="float64") for n in sym.list_auxiliary_states()}
    return sym.bind(mx.cpu(), args, aux_states=aux, grad_req="null"), args


@pytest.mark.parametrize("name", VIDEO)
def test_symbol_equals_gluon_on_the_same_weights(name):
    net = G.get_model(name, alpha=0.25, classes=10)
    params = randomize(net, seed=1, init=FAN_IN)
    sym = S.get_symbol(name, alpha=0.25, num_classes=10).get_internals()["classifier_output"]
    clip = np.random.RandomState(0).uniform(-1, 1, (2, 3, 4, 35, 35))
    ex, args = bind(sym, params, clip.shape)
    assert set(args) - {"data"} == set(params) - {n for n in params if "running" in n}
    args["data"][:] = clip
    want = ex.forward(is_train=False)[0].asnumpy()
    net.cast("float64")
    got = net(mx.nd.array(clip, dtype="float64")).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("name", ["i3d_nl_resnet50", "slowfast_resnet50"])
@pytest.mark.parametrize("shape", [(1, 3, 2, 17, 17), (2, 3, 9, 33, 20), (1, 3, 17, 7, 7)])
def test_clips_of_any_length_and_size(name, shape):
    net = G.get_model(name, alpha=0.5, classes=7)
    net.initialize(FAN_IN)
    assert net(mx.nd.ones(shape)).shape == (shape[0], 7)


def dead_parameters(name, alpha):
    """Learnable parameters of the Gluon network that get no gradient from a clip."""
    net = G.get_model(name, alpha=alpha, classes=10)
    randomize(net, seed=2, init=FAN_IN)
    clip = mx.nd.array(np.random.RandomState(1).uniform(-1, 1, (2, 3, 4, 24, 24)))
    with mx.autograd.record():
        loss = (net(clip) * mx.nd.array(np.random.RandomState(2).randn(2, 10))).sum()
    loss.backward()
    return [n for n, p in net.collect_params().items()
            if p.grad_req != "null" and not np.abs(p.grad().asnumpy()).sum()]


# MXNet 1.9's oneDNN backward of a 3-D convolution into BatchNorm leaves a weight
# gradient it cannot read ("Check failed: !is_view"; README, known limits): the check
# runs in a process with oneDNN off.
BACKWARD_CHECK = """
import sys
sys.path.insert(0, sys.argv[2])
from test_video import dead_parameters
print(dead_parameters(sys.argv[1], 0.25))
"""


@pytest.mark.parametrize("name", ["i3d_nl_resnet50", "slowfast_resnet50"])
def test_backward_reaches_every_parameter(name):
    here = os.path.dirname(os.path.abspath(__file__))
    run = subprocess.run([sys.executable, "-c", BACKWARD_CHECK, name, here],
                         env=dict(os.environ, MXNET_MKLDNN_ENABLED="0"),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("shape, message", [
    ((1, 3, 32, 32), "takes N x C x T x H x W clips (5-D), got a 4-D input"),
    ((1, 3, 1, 32, 32), "a clip of 1 frame(s) is shorter than the network's temporal pooling"),
])
def test_a_wrong_input_is_named(shape, message):
    net = G.get_model("c2d_resnet50", alpha=0.1, classes=10)
    net.initialize()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        net(mx.nd.ones(shape))


def nonlocal_reference(x, p, prefix, eps=1e-5):
    """One branch of the non-local block, from the formula (tests' own NumPy)."""
    conv = lambda t, part: np.einsum("oc,nc...->no...", p[f"{prefix}_{part}_weight"][
        :, :, 0, 0, 0], t) + p[f"{prefix}_{part}_bias"][None, :, None, None, None]
    n, c, t, h, w = x.shape
    padded = np.pad(x, ((0, 0),) * 3 + ((0, h % 2), (0, w % 2)), mode="edge")
    pooled = padded.reshape(n, c, t, -(-h // 2), 2, -(-w // 2), 2).max(axis=(4, 6))
    theta = conv(x, "theta").reshape(n, -1, t * h * w)
    phi = conv(pooled, "phi").reshape(n, theta.shape[1], -1)
    g = conv(pooled, "g").reshape(n, theta.shape[1], -1)
    affinity = np.einsum("ndp,ndq->npq", theta, phi) / np.sqrt(theta.shape[1])
    weights = np.exp(affinity - affinity.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    y = np.einsum("ndq,npq->ndp", g, weights).reshape(n, -1, t, h, w)
    y = conv(y, "out")
    bn = lambda k: p[f"{prefix}_bn-h_{k}"][None, :, None, None, None]
    y = (y - bn("running_mean")) / np.sqrt(bn("running_var") + eps) * bn("gamma") + bn("beta")
    return x + y


@pytest.fixture
def nonlocal_net():
    """A registered test network: a 1x1x1 octave conv into a pair, then one non-local
    block on it, then the head."""
    def builder(ops, x, arch, alpha, classes, dropout):
        x = ops.conv(x, "conv", 3, 12, (1, 1, 1), alpha_out=alpha)
        x = ops.nonlocal_block(x, "nl", 12, alpha)
        return ops.dense(ops.global_pool(x), "classifier", 9, classes)
    register("test_nonlocal", builder, dataclasses.replace(get_spec("c2d_resnet50").arch))
    yield "test_nonlocal"
    del MODELS["test_nonlocal"]


def test_nonlocal_block_equals_numpy_on_each_branch(nonlocal_net):
    net = G.get_model(nonlocal_net, alpha=0.25, classes=4)
    params = randomize(net, seed=3)
    clip = np.random.RandomState(4).randn(2, 3, 3, 7, 6)
    records = {}
    net.layers["conv"].register_forward_hook(lambda b, i, o: records.update(pair=o))
    net.layers["nl-h_bn"].register_forward_hook(lambda b, i, o: records.update(h=o))
    net.layers["nl-l_bn"].register_forward_hook(lambda b, i, o: records.update(l=o))
    net(mx.nd.array(clip))
    hi, lo = (t.asnumpy() for t in records["pair"])
    for branch, x in (("h", hi), ("l", lo)):
        want = nonlocal_reference(x, params, f"nl-{branch}")
        np.testing.assert_allclose(x + records[branch][0].asnumpy(), want, rtol=1e-4,
                                   atol=1e-4)
    fresh = G.get_model(nonlocal_net, alpha=0.25, classes=4)
    fresh.initialize()
    assert all(fresh.collect_params()[f"nl-{b}_bn-h_gamma"].data().asnumpy().max() == 0
               for b in "hl")  # a new block starts as the identity


@pytest.fixture
def padded_twins():
    """Video networks whose stem pools like resnet50_v1b's (padding 1): inflated weights
    must then give the image network's logits exactly."""
    names = []
    for name in ("c2d_resnet50", "i3d_resnet50"):
        spec = get_spec(name)
        register(f"test_{name}", spec.builder, dataclasses.replace(spec.arch, pool1_padding=1),
                 spec.bn)
        names.append(f"test_{name}")
    yield names
    for name in names:
        del MODELS[name]


@pytest.fixture(scope="module")
def image_checkpoint(tmp_path_factory):
    net = G.get_model("resnet50_v1b", alpha=0.25, classes=10)
    randomize(net, seed=5, init=FAN_IN)
    path = str(tmp_path_factory.mktemp("image") / "r50.params")
    mx.nd.save(path, {k: mx.nd.array(p.data().asnumpy()) for k, p in net.collect_params().items()})
    x = np.random.RandomState(6).uniform(-1, 1, (2, 3, 41, 41))
    with mx.autograd.predict_mode():
        return path, x, net(mx.nd.array(x)).asnumpy()


@pytest.mark.parametrize("video, mode", [("c2d_resnet50", "mean"), ("c2d_resnet50", "center"),
                                         ("i3d_resnet50", "center")])
def test_inflated_network_on_identical_frames_gives_the_image_logits(
        padded_twins, image_checkpoint, video, mode, tmp_path):
    from octconv.scoring import load_for_scoring
    path, x, want = image_checkpoint
    out = tmp_path / "video"
    result = run_script("tools/inflate.py", path, "--alpha", "0.25", "--classes", "10",
                        "--video", f"test_{video}", "--mode", mode, "--out", out)
    assert result.returncode == 0, result.stderr
    net, _ = load_for_scoring(str(out))
    clip = np.repeat(x[:, :, None], 6, axis=2)
    got = net(mx.nd.array(clip)).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_mean_inflation_spreads_each_kernel_evenly(image_checkpoint, tmp_path):
    from octconv.checkpoint import load_manifest, read_params
    path, _, _ = image_checkpoint
    out = tmp_path / "video"
    assert run_script("tools/inflate.py", path, "--alpha", "0.25", "--classes", "10",
                      "--video", "i3d_resnet50", "--out", out).returncode == 0
    video = read_params(load_manifest(str(out))["params"])
    image = mx.nd.load(path)
    for name in ("conv1_weight", "L1_B0_conv1-h2h_weight", "L2_B0_conv1-l2l_weight"):
        frames = video[name].shape[2]
        assert frames == {"conv1_weight": 5}.get(name, 3)
        for t in range(frames):
            np.testing.assert_allclose(video[name].asnumpy()[:, :, t],
                                       image[name].asnumpy() / frames, rtol=1e-6)


@pytest.mark.parametrize("args, message", [
    (("--alpha", "0.5", "--classes", "10"), "has shape"),
    (("--classes", "10"), "give --alpha and --classes"),
    (("--alpha", "0.25", "--classes", "10", "--mode", "edge"), "invalid choice: 'edge'"),
])
def test_inflation_refuses_what_does_not_fit(image_checkpoint, args, message, tmp_path):
    path, _, _ = image_checkpoint
    result = run_script("tools/inflate.py", path, "--video", "i3d_resnet50", *args,
                        "--out", tmp_path / "video")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not os.path.exists(tmp_path / "video" / "last.json")


@pytest.mark.parametrize("name", ["c2d_resnet50", "i3d_nl_resnet50", "slowfast_resnet50"])
def test_onnx_export_equals_mxnet_in_onnx_runtime(name, tmp_path):
    """Through tools/export_onnx.py's function, on an odd frame size: 3-D convolutions and
    poolings, the spatial upsampling, the non-local block's matrix products."""
    import onnxruntime as ort
    from octconv.export import export_onnx, logits_symbol
    net = G.get_model(name, alpha=0.25, classes=10)
    params = randomize(net, seed=7, init=FAN_IN)
    clip = np.random.RandomState(8).uniform(-1, 1, (1, 3, 4, 33, 33)).astype("float32")
    want = net(mx.nd.array(clip)).asnumpy()
    path = export_onnx(logits_symbol(name, 0.25, 10), params, str(tmp_path / "m.onnx"), 33,
                       frames=4)
    got = ort.InferenceSession(path).run(None, {"data": clip})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
