"""ONNX export: ONNX Runtime and OpenVINO against MXNet for one network of every
family; weights that do not fit the network are refused."""
import os

import mxnet as mx
import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest

from helpers import FAN_IN, assert_refused_weights, run_script
from octconv.export import export_onnx, logits_symbol
from octconv.gluon import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Pre-activation, grouped (ResNeXt), SE, post-activation, deep stem (v1e with SE and the
# no-affine BNs), MobileNet v1 / v2, DenseNet with both stems.
FAMILIES = ["resnet26_v2", "resnext50_32x4d_v2", "se_resnet50_v2", "resnet50_v1b",
            "se_resnet152_v1e", "mobilenet_v1_075", "mobilenet_v2_100", "densenet121",
            "densenet121_octstem"]


def calibrated(name, alpha, size, classes=10):
    """A network with random weights and BatchNorm statistics from a training pass, so activations stay O(1) like a trained network's. Weights at ``FAN_IN``
    scale: at He's, a 1e-6 change of the input moves the 152-layer SE network's logits
    by up to 0.2 % of their scale, and float32 rounding as much."""
    mx.random.seed(0)
    net = get_model(name, alpha=alpha, classes=classes)
    net.initialize(FAN_IN)
    x = mx.nd.array(np.random.RandomState(5).uniform(-1, 1, (2, 3, size, size)))
    # MXNet's BatchNorm keeps momentum x its running statistics and adds (1 - momentum)
    # x the batch's in a training pass (in backward): with momentum .1 one pass does
    # what 22 passes at its default .9 do (.9 ** 22 = .1); some of the initial variance
    # stays, so that a channel that is constant over a tiny batch does not blow up
    norms = []
    net.apply(lambda block: norms.append(block)
              if isinstance(block, mx.gluon.nn.BatchNorm) else None)
    for block in norms:
        block._kwargs["momentum"] = 0.1  # no public setter in MXNet 1.9
    with mx.autograd.record():
        out = net(x)
    out.backward()
    assert norms and all(float(b.running_var.data().mean().asscalar()) != 1.0 for b in norms)
    scale = float(net(x).abs().max().asscalar())  # logits O(1), as a trained network's
    for key in ("classifier_weight", "classifier_bias"):
        param = net.collect_params()[key]
        param.set_data(param.data() / scale)
    return net


# 7-10 s a case on 2 cores: alpha .5 of these runs only in the slow run (.25 covers
# the uneven splits, 0 the plain graph)
HEAVY = {"resnext50_32x4d_v2", "se_resnet50_v2", "resnet50_v1b", "densenet121",
         "densenet121_octstem"}


def _cases():
    """Every family at alpha 0, .25 and .5; the 152-layer network (deep stem, SE and the
    no-affine BNs; 80-90 s a case on 2 cores) and the heavy families' alpha .5 only in
    the slow run (``make test-all``)."""
    for name in FAMILIES:
        for alpha in (0.0, 0.25, 0.5):
            slow = name == "se_resnet152_v1e" or (name in HEAVY and alpha == 0.5)
            yield pytest.param(name, alpha, marks=pytest.mark.slow) if slow else (name, alpha)


def openvino_logits(path, x):
    """OpenVINO's CPU plugin on the ONNX file, float32, one thread."""
    core = ov.Core()
    model = core.compile_model(core.read_model(path), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    return np.array(model.create_infer_request().infer({0: x})[0])


@pytest.mark.parametrize("name, alpha", list(_cases()))
def test_onnx_runtime_and_openvino_equal_mxnet(name, alpha, tmp_path):
    size = 97  # odd: the low maps are 49, 25, 13, 7 ... and l2h crops
    net = calibrated(name, alpha, size)
    params = {k: p.data() for k, p in net.collect_params().items()}
    path = export_onnx(logits_symbol(name, alpha, 10), params, str(tmp_path / "m.onnx"), size)
    x = np.random.RandomState(0).uniform(-1, 1, (1, 3, size, size)).astype("float32")
    want = net(mx.nd.array(x)).asnumpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["data"]
    got = session.run(None, {"data": x})[0]
    assert 0.1 < np.abs(want).max() < 100
    assert np.abs(got - want).max() < 1e-4
    got = openvino_logits(path, x)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    # every 2x2/2 ceil pooling was folded back into one node (no map here is 1 pixel)
    assert "Pad" not in {node.op_type for node in onnx.load(path).graph.node}


@pytest.mark.parametrize("name, size", [("resnet26_v2", 7), ("densenet121", 2)])
def test_tiny_inputs_export_too(name, size, tmp_path):
    """Maps shrink to one pixel, where the runtimes cannot take a 2x2 ceil-mode window
    and the edge padding stays in the file."""
    net = calibrated(name, 0.25, size)
    params = {k: p.data() for k, p in net.collect_params().items()}
    path = export_onnx(logits_symbol(name, 0.25, 10), params, str(tmp_path / "m.onnx"), size)
    x = np.random.RandomState(0).uniform(-1, 1, (1, 3, size, size)).astype("float32")
    want = net(mx.nd.array(x)).asnumpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for got in (session.run(None, {"data": x})[0], openvino_logits(path, x)):
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_a_batch_and_a_free_batch_axis_export(tmp_path):
    """A file for a batch of 2, and one whose batch axis is free ("batch"), which ONNX
    Runtime and OpenVINO run at 1 and 3 images: each equals MXNet."""
    size = 33
    net = calibrated("resnet26_v2", 0.25, size)
    params = {k: p.data() for k, p in net.collect_params().items()}
    sym = logits_symbol("resnet26_v2", 0.25, 10)
    fixed = export_onnx(sym, params, str(tmp_path / "b2.onnx"), size, batch=2)
    free = export_onnx(sym, params, str(tmp_path / "free.onnx"), size, dynamic_batch=True)
    assert sorted(os.listdir(tmp_path)) == ["b2.onnx", "free.onnx"]  # nothing else left
    dims = lambda value: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    graph = onnx.load(free).graph
    assert dims(graph.input[0]) == ["batch", 3, size, size]
    assert dims(graph.output[0]) == ["batch", 10]
    assert dims(onnx.load(fixed).graph.input[0]) == [2, 3, size, size]
    for path, batches in ((fixed, (2,)), (free, (1, 3))):
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for batch in batches:
            x = np.random.RandomState(batch).uniform(-1, 1, (batch, 3, size, size))
            x = x.astype("float32")
            want = net(mx.nd.array(x)).asnumpy()
            for got in (session.run(None, {"data": x})[0], openvino_logits(path, x)):
                assert got.shape == (batch, 10)
                assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_an_input_of_unequal_sides_exports(tmp_path):
    """``size`` as (height, width): a file for 31 x 46 px inputs (odd and even sides, so
    the low maps round up on one side only), which ONNX Runtime and OpenVINO run equal
    to MXNet."""
    height, width = 31, 46
    net = calibrated("resnet26_v2", 0.5, 32)
    params = {k: p.data() for k, p in net.collect_params().items()}
    path = export_onnx(logits_symbol("resnet26_v2", 0.5, 10), params,
                       str(tmp_path / "m.onnx"), (height, width))
    dims = [d.dim_value for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, height, width]
    x = np.random.RandomState(0).uniform(-1, 1, (1, 3, height, width)).astype("float32")
    want = net(mx.nd.array(x)).asnumpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for got in (session.run(None, {"data": x})[0], openvino_logits(path, x)):
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_export_refuses_weights_of_another_alpha(tmp_path):
    """The tool names the first parameter whose shape does not fit, with both shapes."""
    net = get_model("resnet26_v2", alpha=0.5, classes=10)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    mx.nd.save(str(tmp_path / "a05.params"),  # named as checkpoints and converted files
               {k: p.data() for k, p in net.collect_params().items()})
    out = run_script("tools/export_onnx.py", "--model", "resnet26_v2", "--alpha", "0.25",
                     "--classes", "10", "--params", tmp_path / "a05.params", "--size", "32",
                     "--out", tmp_path / "m.onnx")
    assert_refused_weights(out.returncode, out.stderr)
    assert not os.path.exists(tmp_path / "m.onnx")


def test_export_tool_from_a_training_run(trained_run, tmp_path):
    out = run_script("tools/export_onnx.py", "--checkpoint", trained_run, "--size", "32",
                     "--out", tmp_path / "demo.onnx")
    assert out.returncode == 0, out.stderr[-2000:]
    session = ort.InferenceSession(str(tmp_path / "demo.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"data": np.zeros((1, 3, 32, 32), "float32")})[0].shape == (1, 10)
    for batch, shape in (("--batch=4", [4, 3, 32, 32]), ("--dynamic-batch", ["batch", 3, 32, 32])):
        out = run_script("tools/export_onnx.py", "--checkpoint", trained_run, "--size", "32",
                         batch, "--out", tmp_path / "more.onnx")
        assert out.returncode == 0, out.stderr[-2000:]
        session = ort.InferenceSession(str(tmp_path / "more.onnx"),
                                       providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].shape == shape
    out = run_script("tools/export_onnx.py", "--checkpoint", trained_run, "--dynamic-batch",
                     "--batch", "2", "--out", tmp_path / "both.onnx")
    assert out.returncode == 2 and "--dynamic-batch leaves the batch free" in out.stderr
