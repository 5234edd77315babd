"""TVM deployment: compiled networks against MXNet on the same weights and input, the
exported library in a fresh process, the tuning cache, cross-compilation, the CLIs."""
import csv
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import tvm
from tvm import te

from octconv.deploy import TileCache, compile_symbol, load_library
from octconv.deploy import kernels as K
from octconv.deploy.lower import UnsupportedGraph
from octconv.deploy.bench import gluoncv_network, zoo_network
from octconv.deploy.target import make_target, runs_here, vector_lanes
from octconv.deploy.tuning import scheduled_func

from helpers import run_symbol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# one network per family (spec sections 2 and 3), plus grouped and SE variants
FAMILIES = ["resnet10_v2_mini", "resnet50_v1b", "mobilenet_v1_075", "mobilenet_v2_100",
            "densenet121"]


def mxnet_logits(network, x):
    """The reference: MXNet's own executor on the same Symbol and weights."""
    return run_symbol([network.symbol], {"data": x}, network.params)[0]


def at_fan_in_scale(network):
    """``network`` with its He-scaled convolution weights at 0.7 x (``helpers.FAN_IN``):
    at the full scale deep random networks are chaotic (MXNet's own SE-ResNet-50 logits
    at alpha .5 move 4 % for a 1e-6 change of the input), which no fp32 comparison
    survives."""
    network.params = {k: v * 0.7 if v.ndim == 4 else v for k, v in network.params.items()}
    return network


def network_(name, alpha, size):
    """A zoo network with random weights, at fan-in scale."""
    return at_fan_in_scale(zoo_network(name, alpha, classes=10, size=size))


def two_octave_layers():
    """A small network for what does not depend on the architecture: 3 -> (8, 8) -> 16
    channels through two 3x3 OctConvs with ReLU, global pool, 10 logits."""
    from types import SimpleNamespace
    from octconv.symbol import oct_conv
    x = oct_conv((mx.sym.var("data"), None), "a", 16, 3, 3, padding=1, alpha_out=0.5)
    x = tuple(mx.sym.Activation(t, act_type="relu") for t in x)
    x, _ = oct_conv(x, "b", 16, 3, 16, padding=1, alpha_in=0.5)
    x = mx.sym.Pooling(mx.sym.Activation(x, act_type="relu"), kernel=(1, 1), global_pool=True,
                       pool_type="avg")
    sym = mx.sym.FullyConnected(mx.sym.Flatten(x), num_hidden=10, name="fc")
    shapes, _, _ = sym.infer_shape(data=(1, 3, 16, 16))
    rng = np.random.default_rng(0)
    params = {n: (rng.standard_normal(s) * 0.3).astype(np.float32)
              for n, s in zip(sym.list_arguments(), shapes) if n != "data"}
    return SimpleNamespace(symbol=sym, params=params)


def image(size, seed=1):
    return np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)


def assert_close_to_mxnet(out, ref):
    scale = np.abs(ref).max()
    assert np.abs(out - ref).max() <= 1e-4 * scale, (np.abs(out - ref).max(), scale)


@pytest.fixture
def cache(tmp_path):
    return TileCache(str(tmp_path / "tiles.json"))


@pytest.mark.parametrize("alpha", [0.0, 0.125, 0.5])
@pytest.mark.parametrize("name", FAMILIES)
def test_compiled_network_equals_mxnet(name, alpha, cache):
    network = network_(name, alpha, 33)
    x = image(33)
    compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1)
    assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))


@pytest.mark.parametrize("name, alpha, size", [("resnext50_32x4d_v2", 0.25, 33),
                                               ("se_resnet50_v2", 0.5, 33),
                                               ("resnet10_v2_mini", 0.25, 225)])
def test_grouped_se_and_large_odd_inputs_equal_mxnet(name, alpha, size, cache):
    network = network_(name, alpha, size)
    x = image(size)
    compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1)
    assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))


@pytest.mark.parametrize("kernel", [
    K.Conv((1, 2, 14, 14, 16), 2, 16, 2, 1, 1, 1, 0, K.Epilogue((("bias",), ("act", "relu")))),
    K.Conv((1, 2, 9, 9, 8), 4, 8, 1, 2, 3, 2, 1,
           K.Epilogue((("bias",), ("add", (1, 4, 5, 5, 8), "direct")))),
    K.Conv((1, 1, 10, 10, 16), 2, 16, 1, 1, 3, 1, 1,
           K.Epilogue((("bias",), ("add", (1, 2, 5, 5, 16), "up2"), ("act", "relu6")))),
    K.Depthwise((1, 2, 9, 9, 16), 3, 2, 1, K.Epilogue((("bias",), ("act", "sigmoid")))),
], ids=["conv1x1", "grouped-strided", "conv3x3-up2", "depthwise"])
def test_every_candidate_tile_computes_the_same(kernel):
    """Every schedule the search may pick equals the unscheduled computation."""
    target = make_target()
    if not runs_here(target):
        pytest.skip("host target not runnable")
    tiles = kernel.tiles(vector_lanes(target))
    inputs, output = kernel.compute()
    funcs = {"plain": te.create_prim_func(inputs + [output]).with_attr("global_symbol", "plain")}
    for j, tile in enumerate(tiles):
        funcs[f"tile{j}"] = scheduled_func(kernel, tile).with_attr("global_symbol", f"tile{j}")
    lib = tvm.compile(tvm.IRModule(funcs), target=target)
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal([int(d) for d in t.shape]).astype(np.float32)
              for t in inputs + [output]]

    def run(name):
        args = [tvm.runtime.tensor(a) for a in arrays]
        lib[name](*args) if not hasattr(lib, "jit") else lib.jit()[name](*args)
        return args[-1].numpy()

    expected = run("plain")
    for j, tile in enumerate(tiles):
        np.testing.assert_allclose(run(f"tile{j}"), expected, rtol=1e-5, atol=1e-5,
                                   err_msg=f"tile {tile}")


@pytest.mark.parametrize("name", ["resnet18_v1", "mobilenetv2_0.25"])
def test_gluoncv_vanilla_networks_equal_mxnet(name, cache):
    """Strided convolutions (absent from the zoo, which pools first) and GluonCV's
    graphs (BatchNorm on the input, ReLU6 as clip)."""
    network = at_fan_in_scale(gluoncv_network(name, size=65))
    x = image(65)
    compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1)
    assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))


def test_avx2_kernels_equal_mxnet_too(cache):
    """8-lane blocks (an AVX2 part) take other layouts and tiles than AVX-512 ones."""
    target = make_target("haswell")
    if not runs_here(target):
        pytest.skip("this machine cannot run AVX2 code")
    assert vector_lanes(target) == 8
    network = network_("resnet10_v2_mini", 0.125, 35)
    x = image(35)
    compiled = compile_symbol(network.symbol, network.params, x.shape, target, cache, 1)
    assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))


RELOAD = """
import sys, numpy as np
from octconv.deploy import load_library
out = load_library(sys.argv[1])(np.load(sys.argv[2]))
np.save(sys.argv[3], out)
assert "mxnet" not in sys.modules, "the library should not need MXNet"
"""


def test_library_reloads_in_a_fresh_process_without_mxnet(tmp_path, cache):
    network = network_("mobilenet_v2_100", 0.25, 33)
    x = image(33)
    compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1)
    library = compiled.export(str(tmp_path / "net.so"))
    np.save(tmp_path / "x.npy", x)
    subprocess.run([sys.executable, "-c", RELOAD, library, str(tmp_path / "x.npy"),
                    str(tmp_path / "out.npy")], check=True, cwd=ROOT)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), compiled.run(x))
    np.testing.assert_array_equal(load_library(library)(x), compiled.run(x))
    with pytest.raises(ValueError, match=r"compiled for inputs of shape \(1, 3, 33, 33\)"):
        compiled.run(image(35))


def test_cache_is_written_then_reused_and_a_corrupt_one_is_ignored(tmp_path):
    if not runs_here(make_target()):
        pytest.skip("host target not runnable")
    path = str(tmp_path / "tiles.json")
    network = two_octave_layers()
    x = image(16)
    first = compile_symbol(network.symbol, network.params, x.shape, cache=TileCache(path),
                           budget=2)
    assert first.stats["searches"] > 0
    records = json.load(open(path))
    (target_records,) = records.values()
    assert len(target_records) == first.stats["searches"]
    second = compile_symbol(network.symbol, network.params, x.shape, cache=TileCache(path),
                            budget=2)
    assert second.stats["searches"] == 0
    np.testing.assert_array_equal(second.run(x), first.run(x))

    with open(path, "w") as f:
        f.write('{"llvm -mcpu=x": {"tru')  # a run killed mid-write
    with pytest.warns(RuntimeWarning, match="unreadable TVM tuning cache"):
        cache = TileCache(path)
    third = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=2)
    assert third.stats["searches"] == first.stats["searches"]
    assert_close_to_mxnet(third.run(x), mxnet_logits(network, x))
    assert json.load(open(path))  # rewritten, readable


def test_cross_compiles_for_a_named_avx512_target(tmp_path, cache):
    target = make_target("skylake-avx512")
    assert vector_lanes(target) == 16
    network = network_("resnet10_v2_mini", 0.5, 33)
    x = image(33)
    compiled = compile_symbol(network.symbol, network.params, x.shape, target, cache, 1)
    library = compiled.export(str(tmp_path / "skx.so"))
    assert os.path.getsize(library) > 100_000
    if runs_here(target):  # an AVX-512 machine can check the cross-compiled code too
        assert_close_to_mxnet(load_library(library)(x), mxnet_logits(network, x))


def test_unknown_target_and_unsupported_operator_are_named():
    with pytest.raises(ValueError, match="unknown CPU 'pentium9000'"):
        make_target("pentium9000")
    data = mx.sym.var("data")
    sym = mx.sym.FullyConnected(mx.sym.Flatten(mx.sym.Pooling(
        mx.sym.LeakyReLU(data, act_type="elu", name="odd"), global_pool=True, kernel=(1, 1),
        pool_type="avg")), num_hidden=2, name="fc")
    params = {"fc_weight": np.ones((2, 3), np.float32), "fc_bias": np.zeros(2, np.float32)}
    with pytest.raises(UnsupportedGraph, match="odd: operator LeakyReLU"):
        compile_symbol(sym, params, (1, 3, 8, 8), budget=1)


def test_compile_cli_times_the_trained_demo_network(trained_run, tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "tvm_compile.py"), "--checkpoint",
         trained_run, "--size", "32", "--time", "--runs", "3", "--budget", "1", "--out",
         str(tmp_path / "demo.so"), "--cache", str(tmp_path / "tiles.json")],
        check=True, capture_output=True, text=True, cwd=ROOT).stdout
    for backend in ("tvm", "mxnet", "onnxruntime"):
        assert f"  {backend}" in out
    assert os.path.getsize(tmp_path / "demo.so") > 0


def test_compile_cli_names_a_bad_checkpoint(tmp_path):
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "tvm_compile.py"),
                          "--checkpoint", str(tmp_path / "nothing")],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "checkpoint not found" in run.stderr


def test_results_file_comes_from_the_table2_tool():
    """results/table2.* were written by tools/table2.py: every row of the tool, the
    same figures in the CSV and the markdown, the machine and versions recorded."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import table2
    folder = os.path.join(ROOT, "results")
    rows = list(csv.DictReader(open(os.path.join(folder, "table2.csv"))))
    assert [r["network"] for r in rows] == [r[1] for r in table2.ROWS]
    text = open(os.path.join(folder, "table2.md")).read()
    for key in ("CPU", "TVM target", "versions", "search budget", "wall time"):
        assert f"- {key}: " in text
    for r in rows:
        assert f"| {r['network']} | {float(r['macs_m']):.0f} | {float(r['tvm_ms']):.1f} |" in text
        assert float(r["max_diff"]) <= 1e-4
    assert os.path.getsize(os.path.join(folder, "table2.png")) > 10_000


def test_table2_verdicts_follow_the_issue_targets():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import table2

    def row(name, tvm, mxnet, ort, speedup=None, ratio=None):
        return {"network": name, "tvm_vs_mxnet": tvm / mxnet, "tvm_vs_onnxruntime": tvm / ort,
                "speedup": speedup, "macs_ratio": ratio,
                "speedup_over_macs_ratio": speedup / ratio if speedup else None}

    good = [row("vanilla ResNet-50", 80, 100, 100),
            row("Oct-ResNet-50 alpha=.5", 50, 60, 60, 1.6, 1.65)]
    assert all(ok for _, ok, _ in table2.verdicts(good))
    bad = [row("vanilla ResNet-50", 95, 100, 100),
           row("Oct-ResNet-50 alpha=.5", 70, 60, 60, 1.2, 1.65)]
    assert not any(ok for _, ok, _ in table2.verdicts(bad))
