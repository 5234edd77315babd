"""TVM deployment: compiled networks against MXNet on the same weights and input (also
threaded and batched), Winograd against direct convolution, the exported library in a
fresh process, the tuning and library caches, weights that do not fit, cross-compilation,
the CLIs."""
import csv
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import mxnet as mx
import numpy as np
import pytest

import tvm
from tvm import te
from tvm.target import codegen

from octconv.deploy import TileCache, builders, compile_network, compile_symbol, load_library
from octconv.deploy import algorithms, hugepages
from octconv.deploy import kernels as K
from octconv.deploy.algorithms import POLICY as ALGORITHMS
from octconv.deploy.winograd import (BANDED_WEIGHT_BYTES, PASSES_AHEAD, Winograd, band_bytes,
                                     transform_weight)
from octconv.deploy.libraries import LibraryCache
from octconv.deploy.lower import Tensor, UnsupportedGraph, _pack_conv_weight, _pair_blocks, lower
from octconv.deploy.bench import (TVMRunner, differences_from_mxnet, gluoncv_network,
                                  interleave, onnx_file, ratio_interval, relative_difference,
                                  summarize, time_serving, timed_calls, wait_until_idle,
                                  zoo_network)
from octconv.deploy import target as targets
from octconv.deploy.target import (LINUX_FLAGS, describe, extensions, host_cpu,
                                   l2_cache_bytes, lacking, make_target, runs_here,
                                   vector_lanes)
from octconv.deploy.scaling_check import PART_FLOATS, PASSES, scaling_check
from octconv.deploy.threads import SPIN_COUNT, use_threads
from octconv.deploy import tuning
from octconv.deploy.tuning import (choose_tile, scheduled_func, search_tiles,
                                   tuning_workload)

from helpers import assert_refused_weights, load_script, run_script, run_symbol
from reference import avg_pool2, conv2d

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# one network per family (docs/ARCHITECTURES.md sections 2 and 3), plus grouped and SE variants
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


def small_network(features, scale):
    """``features`` (a Symbol on 16 x 16 inputs) -> global average pool -> 10 logits, with
    normal random weights of standard deviation ``scale``."""
    x = mx.sym.Pooling(features, kernel=(1, 1), global_pool=True, pool_type="avg")
    sym = mx.sym.FullyConnected(mx.sym.Flatten(x), num_hidden=10, name="fc")
    shapes, _, _ = sym.infer_shape(data=(1, 3, 16, 16))
    rng = np.random.default_rng(0)
    params = {n: (rng.standard_normal(s) * scale).astype(np.float32)
              for n, s in zip(sym.list_arguments(), shapes) if n != "data"}
    return SimpleNamespace(symbol=sym, params=params)


def two_octave_layers():
    """A small network for what does not depend on the architecture: 3 -> (8, 8) -> 16
    channels through two 3x3 OctConvs with ReLU, global pool, 10 logits."""
    from octconv.symbol import oct_conv
    x = oct_conv((mx.sym.var("data"), None), "a", 16, 3, 3, padding=1, alpha_out=0.5)
    x = tuple(mx.sym.Activation(t, act_type="relu") for t in x)
    x, _ = oct_conv(x, "b", 16, 3, 16, padding=1, alpha_in=0.5)
    return small_network(mx.sym.Activation(x, act_type="relu"), 0.3)


def image(size, seed=1):
    return np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)


def assert_close_to_mxnet(out, ref):
    scale = np.abs(ref).max()
    assert np.abs(out - ref).max() <= 1e-4 * scale, (np.abs(out - ref).max(), scale)


@pytest.fixture
def cache(tmp_path):
    return TileCache(str(tmp_path / "tiles.json"))


def _network_cases():
    """Every family at alpha .125 on a batch of 2 and 2 threads; the families but
    DenseNet (the slowest to build) also at alpha 0 and at .5 on all cores."""
    for name in FAMILIES:
        yield name, 0.125, 2, 2
        if name != "densenet121":
            yield name, 0.0, 1, 1
            yield name, 0.5, 1, 0


@pytest.mark.parametrize("name, alpha, batch, threads", list(_network_cases()))
def test_compiled_network_equals_mxnet(name, alpha, batch, threads, cache):
    network = network_(name, alpha, 33)
    x = np.concatenate([image(33, seed) for seed in range(1, batch + 1)])
    compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1,
                              threads=threads)
    assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))


def _per_image_results_read_later(program):
    """The per-image calls' results that the batched calls read."""
    return {a.index for call in program.calls[program.per_image:] for a in call.args
            if isinstance(a, Tensor) and a.index < program.per_image}


def test_batched_mobilenet_runs_its_first_layers_image_by_image_and_equals_mxnet(cache):
    """A batch split inside a residual block (the block's input and a later result
    both cross from the per-image calls to the batched ones), on 2 threads."""
    network = network_("mobilenet_v2_100", 0.375, 33)
    x = np.concatenate([image(33, seed) for seed in range(1, 4)])
    lanes = vector_lanes(make_target(None))
    batched = lower(network.symbol.tojson(), network.params, x.shape, lanes,
                    per_image_bytes=np.inf)
    assert batched.per_image == 0
    for call in batched.calls:  # split after each call in turn, until one is inside a block
        limit = sum(4 * np.prod(t) for t in [call.out_shape] + [
            a.shape for a in call.args if isinstance(a, Tensor)]) - 1
        program = lower(network.symbol.tojson(), network.params, x.shape, lanes,
                        per_image_bytes=limit)
        if len(_per_image_results_read_later(program)) >= 2:
            break
    else:
        raise AssertionError("no split crosses a residual")
    assert all(call.out_shape[0] == 1 for call in program.calls[:program.per_image])
    assert all(call.out_shape[0] == 3 for call in program.calls[program.per_image:])
    compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1,
                              threads=2, per_image_bytes=limit)
    assert compiled.stats["per_image"] == compiled.program.per_image == program.per_image
    assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))
    rows = compiled.profile(x, runs=1)
    assert sum(r["calls"] for r in rows) == 3 * program.per_image + len(
        program.calls) - program.per_image
    # each image's calls read their weights again: twice more than one image's call does
    one = compile_symbol(network.symbol, network.params, (1,) + x.shape[1:], cache=cache,
                         budget=1)
    again = sum(a.nbytes for call in program.calls[:program.per_image] for a in call.args
                if isinstance(a, np.ndarray))
    assert again > 0
    assert sum(r["weight_bytes"] for r in rows) == sum(
        r["weight_bytes"] for r in one.profile(x[:1], runs=1)) + 2 * again


def test_slicing_and_stacking_images_run_in_parallel_and_vectorized():
    """Relax's own slice and concat operators, which split a batch into images and
    stack their results, are scheduled (parallel outer loop, vector inner loop) and
    still move every value where it belongs."""
    from tvm import relax
    from octconv.deploy.compile import _schedule_copies
    bb = relax.BlockBuilder()
    data = relax.Var("data", relax.TensorType((3, 2, 5, 7, 8), "float32"))
    with bb.function("main", [data]):
        with bb.dataflow():
            images = [bb.emit(relax.op.strided_slice(data, [0], [i], [i + 1]))
                      for i in (2, 0, 1)]
            out = bb.emit_output(bb.emit(relax.op.concat(images, axis=0)))
        bb.emit_func_output(out)
    module = _schedule_copies(bb.get())
    copies = [f for f in module.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert len(copies) == 4
    for func in copies:
        text = func.script()
        assert "T.parallel" in text and "T.vectorized" in text, text
    x = np.random.default_rng(0).standard_normal((3, 2, 5, 7, 8)).astype(np.float32)
    vm = relax.VirtualMachine(tvm.compile(module, target=make_target(None)), tvm.cpu())
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), x[[2, 0, 1]])


def test_only_a_depthwise_networks_first_layers_run_image_by_image():
    """At batch 8 and 224 px, MobileNet v2 runs its 112 and 56 px layers image by image
    and its 14 and 7 px layers on the batch (28 px ones either way); a ResNet (no
    depthwise layer) and a batch of one run everything on the batch."""
    lanes = vector_lanes(make_target(None))
    mobile = zoo_network("mobilenet_v2_100", 0.0, classes=10)
    program = lower(mobile.symbol.tojson(), mobile.params, (8, 3, 224, 224), lanes)
    sizes = [call.out_shape[2] for call in program.calls if len(call.out_shape) == 5]
    per_image, batched = sizes[:program.per_image], sizes[program.per_image:]
    assert {112, 56} <= set(per_image) and min(per_image) >= 28 >= max(batched)
    one = lower(mobile.symbol.tojson(), mobile.params, (1, 3, 224, 224), lanes)
    assert one.per_image == 0
    resnet = zoo_network("resnet10_v2_mini", 0.25, classes=10)
    assert lower(resnet.symbol.tojson(), resnet.params, (8, 3, 224, 224), lanes,
                 per_image_bytes=0).per_image == 0


@pytest.mark.parametrize("name, alpha, size, batch", [("resnext50_32x4d_v2", 0.25, 33, 1),
                                                      ("se_resnet50_v2", 0.5, 33, 2),
                                                      ("resnet10_v2_mini", 0.25, 225, 1),
                                                      ("resnet10_v2_mini", 0.25, 7, 1)])
def test_grouped_se_and_large_and_tiny_inputs_equal_mxnet(name, alpha, size, batch, cache):
    """(The SE gates' 1x1 convolutions on pooled 1x1 maps, at batch 2, tile the images.)"""
    network = network_(name, alpha, size)
    x = np.concatenate([image(size, seed) for seed in range(1, batch + 1)])
    compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1)
    assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))


@pytest.mark.parametrize("name, alpha, shape, threads", [
    ("mobilenet_v1_075", 0.5, (2, 3, 41, 29), 2), ("resnet50_v1b", 0.375, (3, 3, 21, 44), 0)])
def test_inputs_of_unequal_odd_sides_equal_mxnet(name, alpha, shape, threads, cache):
    """Inputs whose sides differ and are odd, compiled through ``compile_network``'s
    ``size=(height, width)``: every map after them has unequal sides (the low maps each
    rounded up), which the row bands, Winograd tiles and global average see, at a batch
    and on more than one thread."""
    network = network_(name, alpha, max(shape[2:]))
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    compiled = compile_network(name, alpha, classes=10, params=network.params,
                               size=shape[2:], batch=shape[0], cache=cache, budget=1,
                               threads=threads)
    assert compiled.input_shape == shape
    assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))


# Winograd layers of few weights (in bands), in the candidates' test and step by step
# (the last: 13 blocks of 8 channels in 7 pairs, one partner dropped, tiles of 2 x 7)
SMALL_WINOGRAD = [
    Winograd((2, 2, 9, 7, 16), 1, 16, 1, 2, K.Epilogue((("bias",), ("act", "relu")))),
    Winograd((1, 1, 10, 10, 16), 2, 16, 1, 4,
             K.Epilogue((("bias",), ("add", (1, 2, 5, 5, 16), "up2", 0)))),
    Winograd((1, 2, 8, 8, 16), 4, 16, 1, 4, K.Epilogue((("bias",),))),
    Winograd((1, 3, 9, 9, 8), 13, 8, 1, 2, K.Epilogue((
        ("bias",), ("add", (1, 13, 9, 9, 8), "direct", 0), ("act", "relu"))), paired=True)]


@pytest.mark.parametrize("kernel", [
    K.Conv((1, 2, 14, 14, 16), 2, 16, 2, 1, 1, 1, 0, K.Epilogue((("bias",), ("act", "relu")))),
    K.Conv((1, 4, 14, 14, 16), 3, 16, 4, 1, 1, 1, 0,
           K.Epilogue((("bias",), ("add", (1, 3, 14, 14, 16), "direct", 0)))),
    K.Conv((2, 8, 7, 7, 16), 8, 16, 8, 1, 1, 1, 0,
           K.Epilogue((("bias",), ("add", (2, 9, 4, 4, 16), "up2", 1), ("act", "relu")))),
    K.Conv((1, 16, 7, 7, 8), 16, 8, 8, 2, 1, 1, 0, K.Epilogue((("bias",),))),
    K.Conv((1, 4, 13, 13, 8), 3, 8, 4, 1, 3, 2, 1, K.Epilogue((("bias",), ("act", "relu6")))),
    K.Conv((2, 8, 7, 7, 8), 1, 8, 8, 1, 3, 1, 1, K.Epilogue((("bias",),))),
    K.Conv((1, 2, 9, 9, 8), 4, 8, 1, 2, 3, 2, 1,
           K.Epilogue((("bias",), ("add", (1, 4, 5, 5, 8), "direct", 0)))),
    K.Conv((1, 1, 10, 10, 16), 2, 16, 1, 1, 3, 1, 1,
           K.Epilogue((("bias",), ("add", (1, 3, 5, 5, 16), "up2", 1), ("act", "relu6")))),
    K.Conv((1, 8, 28, 28, 16), 2, 16, 8, 1, 1, 1, 0,
           K.Epilogue((("bias",), ("add", (1, 2, 14, 14, 16), "direct", 0))), True),
    K.Conv((2, 4, 13, 13, 8), 8, 8, 4, 1, 1, 1, 0, K.Epilogue((("bias",),)), True),
    K.Conv((1, 14, 8, 8, 16), 7, 8, 14, 1, 1, 1, 0,
           K.Epilogue((("bias",), ("add", (1, 7, 8, 8, 8), "direct", 0), ("act", "relu"))),
           paired=True),
    K.Conv((2, 3, 9, 9, 8), 4, 8, 3, 1, 3, 1, 1,
           K.Epilogue((("bias",), ("add", (2, 5, 5, 5, 8), "up2", 1))), paired=True),
    K.Conv((1, 2, 13, 13, 8), 3, 8, 2, 1, 3, 2, 1, K.Epilogue((("bias",),)), paired=True),
    K.Conv((1, 3, 12, 11, 8), 3, 8, 3, 1, 1, 1, 0,
           K.Epilogue((("bias",), ("add", (1, 3, 6, 6, 8), "direct", 0), ("act", "relu"))),
           pooled=True, paired=True),
    K.Conv((1, 4, 14, 14, 16), 3, 16, 4, 1, 1, 1, 0, K.Epilogue((("bias",),)),
           in_channels=60),
    K.Conv((1, 5, 12, 11, 8), 5, 8, 5, 1, 1, 1, 0,
           K.Epilogue((("bias",), ("add", (1, 5, 6, 6, 8), "direct", 0))),
           pooled=True, paired=True, in_channels=36),
    K.Conv((2, 3, 9, 9, 8), 3, 8, 3, 1, 3, 2, 1, K.Epilogue((("bias",),)), paired=True,
           in_channels=18),
    K.Depthwise((1, 2, 9, 9, 16), 3, 2, 1, K.Epilogue((("bias",), ("act", "sigmoid")))),
    K.Depthwise((2, 1, 8, 8, 8), 3, 1, 1, K.Epilogue((("bias",),))),
    K.Depthwise((1, 4, 12, 12, 16), 3, 1, 1, K.Epilogue((("bias",), ("act", "relu")))),
    K.Depthwise((1, 8, 7, 7, 8), 3, 1, 1, K.Epilogue((("bias",),))),
    K.Depthwise((1, 2, 13, 13, 16), 3, 1, 1, K.Epilogue((("bias",), ("act", "relu"))), True),
    K.Depthwise((2, 3, 28, 28, 8), 3, 1, 1, K.Epilogue((("bias",),)), True),
    K.Conv((6, 5, 1, 1, 16), 4, 16, 5, 1, 1, 1, 0, K.Epilogue((("bias",), ("act", "sigmoid")))),
    K.Dense((6, 5, 1, 1, 16), 3, 40),
    K.Dense((1, 5, 1, 1, 16), 3, 40),
    K.Dense((2, 3, 1, 1, 8), 2, 20),
    K.Pool((1, 2, 9, 9, 16), "max", 3, 2, 1, False),
    K.Pool((1, 1, 8, 8, 16), "avg", 3, 1, 1, False),
    K.Pool((1, 1, 9, 9, 8), "avg", 2, 2, 0, True),
    *SMALL_WINOGRAD,
], ids=["conv1x1", "conv1x1-wide-blocked", "conv1x1-7px-batch2-up2", "grouped-1x1-7px",
        "conv3x3-strided-blocked", "conv3x3-8lane-batch2",
        "grouped-strided", "conv3x3-up2", "conv1x1-pooled-blocked", "conv1x1-pooled-odd-7px",
        "conv1x1-paired-odd", "conv3x3-paired-batch2-up2", "conv3x3-paired-strided",
        "conv1x1-pooled-paired-odd", "conv1x1-60-of-64-channels-blocked",
        "conv1x1-pooled-paired-36-of-40-channels", "conv3x3-strided-paired-18-of-24-channels",
        "depthwise", "depthwise-batch2",
        "depthwise-row-chunks", "depthwise-whole-map", "depthwise-pooled-odd",
        "depthwise-pooled-8lane-batch2", "conv1x1-images", "dense-batch6", "dense-4-sums",
        "dense-2-sums-8-channel-blocks",
        "maxpool-padded",
        "avgpool-padded", "avgpool-ceil", "winograd2", "winograd4-up2", "winograd4-4x4-tiles",
        "winograd2-paired-odd-2x7-tiles"])
def test_every_candidate_tile_computes_the_same(kernel):
    """Every schedule the search may pick equals the unscheduled computation (the 7 px
    1x1 convolutions' include tiles that pad the flat pixels)."""
    target = make_target()
    if not runs_here(target):
        pytest.skip("host target not runnable")
    _assert_tiles_compute_the_same(kernel, kernel.tiles(vector_lanes(target)), target)


def _assert_tiles_compute_the_same(kernel, tiles, target):
    """``kernel`` scheduled with each of ``tiles`` and built for ``target`` gives what
    its unscheduled computation gives, on random inputs."""
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


@pytest.mark.parametrize("size", [13, 14])
@pytest.mark.parametrize("kind", ["depthwise", "1x1"])
def test_a_pooling_kernel_is_a_pooling_then_its_convolution(kind, size):
    """``Depthwise(..., pooled=True)`` and ``Conv(..., pooled=True)`` against NumPy: the
    map average-pooled 2x2/2, an odd map's last row and column averaged alone, then the
    3x3 depthwise convolution (padding 1) or the 1x1 convolution (3 input blocks to 2
    output blocks), with its bias."""
    target = make_target()
    if not runs_here(target):
        pytest.skip("host target not runnable")
    blocks, lanes = 3, vector_lanes(target)
    epilogue = K.Epilogue((("bias",),))
    if kind == "depthwise":  # weights (out, in per group, k, k)
        kernel = K.Depthwise((1, blocks, size, size, lanes), 3, 1, 1, epilogue, True)
        out, fan_in, k = blocks * lanes, 1, 3
    else:
        kernel = K.Conv((1, blocks, size, size, lanes), 2, lanes, blocks, 1, 1, 1, 0,
                        epilogue, True)
        out, fan_in, k = 2 * lanes, blocks * lanes, 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, blocks * lanes, size, size)).astype(np.float32)
    w = rng.standard_normal((out, fan_in, k, k)).astype(np.float32)
    bias = rng.standard_normal(out).astype(np.float32)
    expected = conv2d(avg_pool2(x), w, (k // 2, k // 2), bias)

    if kind == "depthwise":  # (B, KH, KW, lanes)
        packed_w = w[:, 0].reshape(blocks, lanes, 3, 3).transpose(0, 2, 3, 1)
    else:  # (OB, IB, 1, 1, in lanes, out lanes)
        packed_w = w.reshape(2, lanes, blocks, lanes, 1, 1).transpose(0, 2, 4, 5, 3, 1)
    for tile in kernel.tiles(lanes)[:3]:
        func = scheduled_func(kernel, tile).with_attr("global_symbol", "k")
        lib = tvm.compile(tvm.IRModule({"k": func}), target=target)
        args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in (
            _blocked(x, lanes), packed_w, bias.reshape(-1, lanes),
            np.zeros(kernel.out_shape, np.float32))]
        lib["k"](*args)
        assert kernel.out_shape[2:4] == expected.shape[2:4] == ((size + 1) // 2,) * 2
        np.testing.assert_allclose(args[-1].numpy(), _blocked(expected, lanes), rtol=1e-5,
                                   atol=1e-5, err_msg=f"tile {tile}")


def test_8_channel_blocks_pair_in_16_lane_accumulators_and_equal_numpy():
    """With 16-lane vectors a convolution whose output has 8-channel blocks (alpha
    .125's 56-channel maps, alpha .375's 24- and 40-channel low maps of Oct-MobileNet
    v1 0.75, whose h2l convolutions pool as they read) computes two blocks in each
    accumulator, its weights packed by pairs when the network is lowered (a Winograd
    layer's too: alpha .125's 3x3 layers of stage 1); with 8 lanes, or one output
    block, it does not pair, nor does a pooling convolution whose paired weights would
    outweigh its input. A paired 3x3 convolution and a paired pooling 1x1 one of 3
    output blocks (one dropped partner) with those weights equal NumPy."""
    for name, alpha, size, blocks, pooled in (("resnet50_v2", 0.125, 32, 7, False),
                                             ("mobilenet_v1_075", 0.375, 64, 3, True)):
        network = zoo_network(name, alpha, classes=10, size=size)
        for lanes in (16, 8):
            program = lower(network.symbol.tojson(), network.params, (1, 3, size, size), lanes)
            convs = [c.kernel for c in program.calls if type(c.kernel) in (K.Conv, Winograd)]
            # ResNet: the 56-channel outputs of stage 1 (7 blocks of 8), by Winograd too;
            # MobileNet: the 24-channel low outputs of the h2l convolution that pools the
            # stem's map
            chosen = [k for k in convs if (k.out_blocks, k.out_block,
                                           getattr(k, "pooled", False)) == (blocks, 8, pooled)]
            assert chosen and all(k.paired == (lanes == 16) for k in chosen), (name, lanes)
            assert any(type(k) is Winograd for k in chosen) == (name == "resnet50_v2")
            assert not any(k.paired for k in convs if k.out_blocks == 1 or k.out_block == 16)
    outweighing = K.Conv((1, 1, 5, 5, 8), 3, 8, 1, 1, 1, 1, 0, K.Epilogue((("bias",),)),
                         pooled=True)  # 192 weights, 200 inputs; paired 256
    assert outweighing.bands_first and not outweighing.pairs_on(16)
    target = make_target()
    if not runs_here(target):
        pytest.skip("host target not runnable")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 16, 9, 9)).astype(np.float32)
    bias = rng.standard_normal(24).astype(np.float32)
    lin, lout = K.Layout(16, 8), K.Layout(24, 8)

    for k, pooled, expected in ((3, False, lambda w: conv2d(x, w, (1, 1), bias)),
                                (1, True, lambda w: conv2d(avg_pool2(x), w, (0, 0), bias))):
        w = rng.standard_normal((24, 16, k, k)).astype(np.float32)
        weights = _pair_blocks(_pack_conv_weight(w, 1, lin, lout, 1, 2))
        kernel = K.Conv((1, 2, 9, 9, 8), 3, 8, 2, 1, k, 1, k // 2, K.Epilogue((("bias",),)),
                        pooled=pooled, paired=True)
        assert weights.shape == kernel.weight_shape == (2, 2, k, k, 8, 16)
        for tile in kernel.tiles(16)[:3]:
            func = scheduled_func(kernel, tile).with_attr("global_symbol", "k")
            lib = tvm.compile(tvm.IRModule({"k": func}), target=target)
            args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in (
                _blocked(x, 8), weights, bias.reshape(3, 8),
                np.zeros(kernel.out_shape, np.float32))]
            lib["k"](*args)
            np.testing.assert_allclose(args[-1].numpy(), _blocked(expected(w), 8), rtol=1e-4,
                                       atol=1e-4, err_msg=f"{k}x{k} tile {tile}")


def test_convolutions_skip_the_padding_lanes_of_their_last_input_block():
    """Oct-MobileNet v1 0.75 alpha .375's maps of 18, 30, 36 and 60 channels are stored
    in whole blocks (24, 32, 40, 64 lanes): each convolution of one block group that
    reads one of them reduces over its channels only (``in_channels``), the others over
    every lane. With garbage in the input's padding lanes and in the weights' (zeros
    once lowered), 1x1 (pooling as it reads too) and strided 3x3 convolutions, paired
    or not, equal NumPy over the real channels with each of their first tiles."""
    network = zoo_network("mobilenet_v1_075", 0.375, classes=10, size=64)
    program = lower(network.symbol.tojson(), network.params, (1, 3, 64, 64), 16)
    skipping = Counter()
    for call in program.calls:
        if type(call.kernel) is K.Conv:
            layout = call.args[0].layout
            padded = layout.channels < layout.padded and call.kernel.groups == 1
            assert call.kernel.in_channels == (layout.channels if padded else None)
            skipping[layout.channels] += padded
    assert {c for c, n in skipping.items() if n} == {18, 30, 36, 60}
    target = make_target()
    if not runs_here(target):
        pytest.skip("host target not runnable")
    rng = np.random.default_rng(0)
    for channels, block, k, stride, pooled, out, out_block in (
            (60, 16, 1, 1, False, 48, 16), (36, 8, 1, 1, True, 24, 8),
            (18, 8, 3, 2, False, 24, 8), (30, 16, 1, 1, False, 40, 8)):
        lin, lout = K.Layout(channels, block), K.Layout(out, out_block)
        x = rng.standard_normal((1, lin.padded, 10, 10)).astype(np.float32)  # garbage past
        w = rng.standard_normal((out, lin.padded, k, k)).astype(np.float32)  # the channels
        bias = rng.standard_normal(out).astype(np.float32)
        real = (avg_pool2(x) if pooled else x)[:, :channels]
        expected = conv2d(real, w[:, :channels], (k // 2, k // 2), bias)[..., ::stride, ::stride]
        paired = out_block == 8
        weights = _pack_conv_weight(w, 1, K.Layout(lin.padded, block), lout, 1, lin.blocks)
        kernel = K.Conv((1, lin.blocks, 10, 10, block), lout.blocks, out_block, lin.blocks, 1,
                        k, stride, k // 2, K.Epilogue((("bias",),)), pooled=pooled,
                        paired=paired, in_channels=channels)
        for tile in kernel.tiles(16)[:3]:
            func = scheduled_func(kernel, tile).with_attr("global_symbol", "k")
            lib = tvm.compile(tvm.IRModule({"k": func}), target=target)
            args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in (
                _blocked(x, block), _pair_blocks(weights) if paired else weights,
                bias.reshape(-1, out_block), np.zeros(kernel.out_shape, np.float32))]
            lib["k"](*args)
            np.testing.assert_allclose(args[-1].numpy(), _blocked(expected, out_block),
                                       rtol=1e-4, atol=1e-4,
                                       err_msg=f"{channels} channels, tile {tile}")


def _blocked(a, block):
    """(N, C, H, W) -> (N, C / block, H, W, block)."""
    return a.reshape(a.shape[0], -1, block, *a.shape[2:]).transpose(0, 1, 3, 4, 2)


def test_depthwise_and_1x1_octconvs_pool_as_they_read_and_equal_mxnet(cache):
    """OctConv's stride 2 average-pools each branch before its convolution, its h2l path
    the high map: before a depthwise or a 1x1 convolution, that kernel pools as it reads
    (no pooling call, no pooled map); the pooling before a 3x3 convolution stays a call
    of its own. The network equals MXNet on even and odd maps."""
    from octconv.symbol import oct_conv
    if not runs_here(make_target()):
        pytest.skip("host target not runnable")

    def relu(pair):
        return tuple(mx.sym.Activation(t, act_type="relu") for t in pair)

    x = relu(oct_conv((mx.sym.var("data"), None), "a", 32, 3, 3, padding=1, alpha_out=0.5))
    x = relu(oct_conv(x, "dw", 32, 3, 32, stride=2, padding=1, alpha_in=0.5, alpha_out=0.5,
                      groups=32))
    x = relu(oct_conv(x, "pw", 32, 1, 32, alpha_in=0.5, alpha_out=0.5))
    hi, _ = oct_conv(x, "out", 16, 1, 32, alpha_in=0.5)
    network = small_network(hi, 0.3)
    for size in (16, 15):
        program = lower(network.symbol.tojson(), network.params, (1, 3, size, size),
                        vector_lanes(make_target()))
        depthwise = [c.kernel for c in program.calls if isinstance(c.kernel, K.Depthwise)]
        assert [k.pooled for k in depthwise] == [True, True]  # high and low branch
        assert [k.out_shape[2] for k in depthwise] == [(size + 1) // 2, (size + 3) // 4]
        pools = [c.kernel.data for c in program.calls if isinstance(c.kernel, K.Pool)]
        assert pools == [program.calls[0].out_shape]  # a's 3x3 h2l path pools the input
        pooling = [c.kernel for c in program.calls
                   if isinstance(c.kernel, K.Conv) and c.kernel.pooled]
        assert [k.data for k in pooling] == [depthwise[0].out_shape]  # pw's h2l path
        x = image(size)
        compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache,
                                  budget=1)
        assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))


def test_a_1x1_convolution_pools_as_it_reads_only_where_its_input_outweighs_its_weights(
        cache):
    """An h2l path's 1x1 convolution (32 -> 256 channels) pools its input as it reads on
    a 32 px map, whose input outweighs its weights (bands of rows, each pooled once);
    on an 8 px map, where the weights outweigh the input and its threads split output
    blocks, the pooling stays a call of its own (pooling inside would repeat it for
    each group of output blocks). Both equal MXNet."""
    from octconv.symbol import oct_conv
    if not runs_here(make_target()):
        pytest.skip("host target not runnable")
    x = oct_conv((mx.sym.var("data"), None), "a", 64, 3, 3, padding=1, alpha_out=0.5)
    x = tuple(mx.sym.Activation(t, act_type="relu") for t in x)
    hi, lo = oct_conv(x, "b", 512, 1, 64, alpha_in=0.5, alpha_out=0.5)
    network = small_network(mx.sym.concat(mx.sym.Pooling(hi, kernel=(2, 2), stride=(2, 2),
                                                          pool_type="max"), lo, dim=1), 0.1)
    for size, pooling in ((32, True), (8, False)):
        program = lower(network.symbol.tojson(), network.params, (1, 3, size, size),
                        vector_lanes(make_target()))
        h2l = [c.kernel for c in program.calls if isinstance(c.kernel, K.Conv)
               and c.out_shape[1] * c.out_shape[4] == 256 and c.out_shape[2] == size // 2]
        avg = [c.kernel for c in program.calls
               if isinstance(c.kernel, K.Pool) and c.kernel.pool_type == "avg"]
        assert [k.pooled for k in h2l] == [pooling]
        assert len(avg) == (0 if pooling else 1) + 1  # (+ a's h2l path, a 3x3 one)
        assert h2l[0].bands_first == pooling
        x = image(size)
        compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache,
                                  budget=1)
        assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))


def _weight_traffic(func, block):
    """``[(kind, row)]``: the weight rows (every index but the lanes') that ``func``
    prefetches ("prefetch") and that its ``block`` reads ("read"), in the order one
    thread runs them: the scheduled loops interpreted in Python, each index evaluated
    from its printed expression."""
    namespace = {"T": SimpleNamespace(
        min=min, max=max, Add=lambda a, b: a + b, Sub=lambda a, b: a - b,
        Mul=lambda a, b: a * b, FloorDiv=lambda a, b: a // b, FloorMod=lambda a, b: a % b)}
    events = []

    def expression(expr):
        code = compile(str(expr), "<tir>", "eval")
        return lambda env: eval(code, namespace, env)  # noqa: S307 - our own printed TIR

    def translate(node):
        if isinstance(node, tvm.tirx.For):
            name, start, body = node.loop_var.name, int(node.min), translate(node.body)
            extent = 1 if node.kind == tvm.tirx.ForKind.VECTORIZED else int(node.extent)

            def loop(env):
                for i in range(start, start + extent):
                    env[name] = i
                    body(env)
            return loop
        if isinstance(node, tvm.tirx.SeqStmt):
            stmts = [translate(stmt) for stmt in node.seq]
            return lambda env: [stmt(env) for stmt in stmts]
        if isinstance(node, tvm.tirx.Evaluate):  # call_llvm_intrin(id, address_of(load), ...)
            rows = [expression(i) for i in node.value.args[1].args[0].indices[:-1]]
            return lambda env: events.append(("prefetch", tuple(r(env) for r in rows)))
        if hasattr(node, "iter_values"):  # a block's realize
            if node.block.name_hint == "root":
                return translate(node.block.body)
            if node.block.name_hint != f"{block}_update":
                return lambda env: None
            binds = [(v.var.name, expression(x)) for v, x in
                     zip(node.block.iter_vars, node.iter_values)]
            region = next(r for r in node.block.reads if r.source.name == "weight")
            rows = [expression(r.min) for r in region.region[:-1]]

            def read(env):
                env.update({name: bind(env) for name, bind in binds})
                events.append(("read", tuple(r(env) for r in rows)))
            return read
        if hasattr(node, "body"):
            return translate(node.body)
        return lambda env: None

    translate(func.body)({})
    return events


BIAS = K.Epilogue((("bias",),))


@pytest.mark.parametrize("kernel, tile, unit, first, ahead", [
    (K.Conv((1, 8, 7, 7, 16), 4, 16, 8, 1, 1, 1, 0, BIAS), K.ConvTile(1, 7, 2, 8),
     lambda row: row[0] // 2, lambda unit: unit == 0, 1),
    (K.Conv((1, 2, 8, 8, 16), 4, 16, 2, 1, 3, 1, 1, BIAS), K.ConvTile(1, 8, 2, 2),
     lambda row: row[0] // 2, lambda unit: unit == 0, 1),
    (K.Conv((1, 8, 14, 14, 16), 4, 16, 8, 1, 1, 1, 0, BIAS), K.ConvTile(1, 7, 2, 4),
     lambda row: (row[0] // 2, row[1] // 4), lambda unit: unit[1] == 0, 1),
    (K.Conv((1, 2, 14, 14, 8), 2, 16, 4, 1, 3, 1, 1, BIAS), K.ConvTile(1, 7, 2, 2),
     lambda row: (row[0] // 2, row[1] // 2), lambda unit: unit[1] == 0, 1),
    (Winograd((1, 12, 7, 7, 16), 12, 16, 1, 2, BIAS), (4, 4, 2),  # (2.4 MB: step by step)
     lambda row: (row[0], row[1], row[2] // 4, row[3] // 2), lambda unit: False,
     PASSES_AHEAD),
], ids=["1x1-blocks", "3x3-blocks", "1x1-passes-bands-first", "3x3-passes-8-lanes",
        "winograd-passes-across-chains"])
def test_convolutions_prefetch_the_weights_they_read_next(kernel, tile, unit, first, ahead):
    """Run in order on one thread, a convolution prefetches every weight row of a unit
    while it reads the unit ``ahead`` units before it (a unit: with the reduction
    innermost, a register tile's output blocks; else one pass's input blocks of them;
    with Winograd, a pass of one transformed position), and only rows of its weights. A
    direct convolution prefetches the next unit, so the units that start a chain come
    unprefetched: the first output blocks, the first pass of a tile's blocks. Winograd's
    products prefetch the pass :data:`PASSES_AHEAD` passes ahead, across the chains of
    passes, so only the first passes of the whole run come unprefetched."""
    block = "gemm" if isinstance(kernel, Winograd) else "conv"
    events = _weight_traffic(scheduled_func(kernel, tile), block)
    prefetched = [row for kind, row in events if kind == "prefetch"]
    bounds = kernel.weight_shape[:-1]
    assert prefetched and all(0 <= i < n for row in prefetched for i, n in zip(row, bounds))
    visits = []  # [unit, rows read, first event after the last read before] of each
    last = -1    # run of reads of one unit
    for j, (kind, row) in enumerate(events):
        if kind == "read":
            if not visits or visits[-1][0] != unit(row):
                visits.append([unit(row), set(), last + 1])
            visits[-1][1].add(row)
            last = j
    checked = 0
    for j in range(ahead, len(visits)):
        if first(visits[j][0]):
            continue
        during = events[visits[j - ahead][2]:visits[j - ahead + 1][2]]
        fetched = {row for kind, row in during if kind == "prefetch"}
        assert visits[j][1] <= fetched, (visits[j][0], sorted(visits[j][1] - fetched)[:4])
        checked += 1
    assert checked >= len(visits) // 2


def test_a_pass_whose_weights_outrun_memory_is_not_prefetched():
    """A 7 px 1x1 convolution's pass of 4 input blocks reads 2 x 4 x 16 = 128 weight
    rows in 4 x 16 x 7 x 2 = 896 vector multiply-adds, one row per 7: fewer than the
    limit, so its weights come as the tile reads them, unprefetched; the same layer
    with the reduction innermost reads a row per 44 (it prefetches)."""
    kernel = K.Conv((1, 8, 7, 7, 16), 4, 16, 8, 1, 1, 1, 0, BIAS)
    assert 896 / 128 < K.FMAS_PER_PREFETCH < 44
    assert "llvm.prefetch" not in scheduled_func(kernel, K.ConvTile(1, 7, 2, 4)).script()
    assert "llvm.prefetch" in scheduled_func(kernel, K.ConvTile(1, 7, 2, 8)).script()


def test_weight_bound_1x1_convolutions_on_7px_maps_try_tiles_of_5_pixels():
    """A 1x1 convolution whose weights outweigh its input on a 7 px map (ResNet-50's last
    stage, 768 -> 256 channels) streams its weights (``Conv.streams_weights``): with
    AVX-512 the search's first four candidates keep the best whole-row tile first (7
    pixels x 2 blocks) and include 5 pixels x 2 blocks (49 flat pixels padded to 50),
    and no candidate blocks its input channels, with AVX-512 or AVX2; the first four
    compute what the unscheduled kernel does. On a 14 px map, with fewer weights than
    input, or at batch 8 (whose workload keeps its batch, so that its tiles are searched
    apart from batch 1's), the blocked forms stay among the first four."""
    bias = K.Epilogue((("bias",),))
    small = K.Conv((1, 48, 7, 7, 16), 16, 16, 48, 1, 1, 1, 0, bias)
    assert small.streams_weights
    first = small.tiles(16)[:4]
    assert (first[0].cols, first[0].out_blocks) == (7, 2)
    assert any((tile.cols, tile.out_blocks) == (5, 2) for tile in first), first
    for lanes in (16, 8):
        assert all(tile.in_blocks == 48 for tile in small.tiles(lanes))
    target = make_target()
    if runs_here(target):
        _assert_tiles_compute_the_same(small, small.tiles(vector_lanes(target))[:4], target)
    larger = replace(small, data=(1, 48, 14, 14, 16))
    light = K.Conv((1, 16, 7, 7, 16), 1, 16, 16, 1, 1, 1, 0, bias)
    batched = replace(small, data=(8, 48, 7, 7, 16))
    for other in (larger, light, batched):
        assert not other.streams_weights
        blocks = other.in_blocks_per_group
        assert any(tile.in_blocks < blocks for tile in other.tiles(16)[:4]), other
    # a batch searches its own tiles, not those that batch 1 streams its weights with
    assert [tuning_workload(k, 16).data[0] for k in (small, batched)] == [1, 8]
    assert tuning_workload(replace(larger, data=(8, 48, 14, 14, 16)), 16).data[0] == 1


def test_1x1_convolutions_on_7px_maps_take_tiles_of_several_pixels_with_avx2():
    """ResNet-50's 7 px 1x1 layers with AVX2 code: a 16-channel block takes two of the
    12 accumulator registers, so no row of 7 pixels fits and 49 pixels have no other
    divisor; the first register tiles pad each image's flat pixels to whole tiles of
    several pixels (each weight loaded serves them all) instead of holding one, those
    tiles compute what the unpadded computation does (built for this machine), and
    threads still split the output blocks (in the convolution and in its epilogue's
    pass), into at least 8 parts however few blocks a tile leaves."""
    bias = K.Epilogue((("bias",), ("add", (1, 4, 7, 7, 16), "direct", 0), ("act", "relu")))
    kernel = K.Conv((1, 16, 7, 7, 16), 4, 16, 16, 1, 1, 1, 0, bias)
    tiles = kernel.tiles(8)
    wide = K.ConvTile(*kernel.wide_tile(8), 16)  # 1 pixel x 2 blocks: its own reason
    assert all(tile.cols > 1 for tile in tiles[:4] if tile != wide), tiles[:4]
    padded = [tile for tile in tiles if 49 % tile.cols]
    assert len(padded) >= 4
    for tile in padded:
        for block in ("conv", "epilogue"):
            assert _first_thread_range(kernel, tile, block, axis=1) == (0, 1, 4), tile
        assert _first_thread_range(kernel, tile, "epilogue", axis=2) == (0, 6, 7), tile
        assert _parallel_extents(kernel, tile)[0] >= 8, tile  # not 4 / out_blocks
    target = make_target()
    if runs_here(target):
        _assert_tiles_compute_the_same(kernel, padded, target)
    # with AVX-512's one register a block, 7 pixels x 2 blocks fit: first, unpadded
    best = kernel.tiles(16)[0]
    assert (best.cols, best.out_blocks) == (7, 2)


@pytest.mark.parametrize("kernel", [
    K.Conv((1, 4, 14, 14, 16), 4, 16, 4, 1, 1, 1, 0, BIAS),
    K.Conv((1, 2, 8, 8, 16), 4, 16, 2, 1, 3, 1, 1, BIAS),
    K.Conv((1, 3, 9, 9, 8), 2, 8, 3, 1, 1, 1, 0, BIAS, True),
    K.Conv((6, 5, 1, 1, 16), 4, 16, 5, 1, 1, 1, 0, BIAS),
], ids=["1x1", "3x3", "1x1-pooled-8-lanes", "1x1-images"])
def test_convolutions_unroll_the_input_channels_of_a_block_with_16_lanes(kernel):
    """With 16-lane vectors (AVX-512) every tile of a direct convolution (the reduction
    innermost or in passes of input blocks) unrolls the reduction's innermost loop, the
    input channels of one block, inside which the register tile's multiply-adds are
    unrolled already; with 8 lanes (AVX2 code, where it ran slower) no tile does."""
    for lanes, unrolled in ((16, True), (8, False)):
        for tile in kernel.tiles(lanes):
            loops = {loop.loop_var.name: loop
                     for loop in _stmts(scheduled_func(kernel, tile).body)
                     if isinstance(loop, tvm.tirx.For)}
            assert int(loops["ic"].extent) == kernel.data[4], (lanes, tile)  # a block's channels
            assert (loops["ic"].kind == tvm.tirx.ForKind.UNROLLED) == unrolled, (lanes, tile)


@pytest.mark.parametrize("kernel", [
    K.Pool((1, 2, 8, 8, 16), "avg", 2, 2, 0, False),
    K.Pool((1, 1, 9, 9, 8), "avg", 2, 2, 0, True),
    K.Pool((1, 1, 8, 8, 16), "avg", 3, 1, 1, False),
    K.Pool((1, 1, 9, 9, 16), "avg", 3, 2, 1, True),
], ids=["2x2-even", "2x2-odd-ceil", "3x3-padded", "3x3-strided-padded-ceil"])
def test_average_poolings_equal_numpy(kernel):
    """An average pooling divides each window's sum by the pixels of the map it covers
    (MXNet's ``count_include_pad=False``), against a NumPy loop over the windows."""
    target = make_target()
    if not runs_here(target):
        pytest.skip("host target not runnable")
    x = np.random.default_rng(0).standard_normal(kernel.data).astype(np.float32)
    _, _, oh, ow, _ = kernel.out_shape
    k, s, p = kernel.kernel, kernel.stride, kernel.pad
    expected = np.empty(kernel.out_shape, np.float32)
    for y in range(oh):
        for x_ in range(ow):
            rows = slice(max(y * s - p, 0), min(y * s - p + k, kernel.data[2]))
            cols = slice(max(x_ * s - p, 0), min(x_ * s - p + k, kernel.data[3]))
            expected[:, :, y, x_] = x[:, :, rows, cols].mean(axis=(2, 3))
    _assert_every_tile_gives(kernel, x, expected, target)


@pytest.mark.parametrize("shape", [(1, 2, 7, 9, 16), (2, 1, 9, 4, 16)],
                         ids=["7x9", "9x4-batch2"])
def test_global_average_equals_numpy_on_maps_of_unequal_sides(shape):
    """The global average takes its window as (height, width): on maps whose sides
    differ, a window with the two swapped would read past one side and miss part of
    the other. Against NumPy's mean over the map, with every candidate tile."""
    target = make_target()
    if not runs_here(target):
        pytest.skip("host target not runnable")
    kernel = K.GlobalPool(shape)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    _assert_every_tile_gives(kernel, x, x.mean(axis=(2, 3), keepdims=True), target)


def _assert_every_tile_gives(kernel, x, expected, target):
    """``kernel`` (of one input) scheduled with each of its candidate tiles for
    ``target`` gives ``expected`` on ``x``."""
    for tile in kernel.tiles(vector_lanes(target)):
        func = scheduled_func(kernel, tile).with_attr("global_symbol", "k")
        lib = tvm.compile(tvm.IRModule({"k": func}), target=target)
        args = [tvm.runtime.tensor(x), tvm.runtime.tensor(np.zeros_like(expected))]
        lib["k"](*args)
        np.testing.assert_allclose(args[-1].numpy(), expected, rtol=1e-5, atol=1e-6,
                                   err_msg=f"tile {tile}")


@pytest.mark.parametrize("kernel", [K.Pool((1, 2, 9, 9, 16), "avg", 2, 2, 0, True),
                                    K.GlobalPool((1, 4, 7, 7, 16))], ids=["pool", "global"])
def test_an_average_is_divided_in_the_loop_that_sums_it(kernel):
    """An average pooling is one parallel loop: each output pixel's lanes are divided as
    soon as they are summed, not in a second pass over a whole map of sums (which took
    1.5-2 x the time)."""
    for tile in kernel.tiles(16):
        assert scheduled_func(kernel, tile).script().count("T.parallel(") == 1


def test_winograd_in_bands_is_one_parallel_loop_of_whole_register_tiles():
    """A Winograd layer with few weights runs in bands of tile rows, one parallel loop
    (a thread hands no transformed tiles or products to another), first in register
    tiles of whole divisors of a band's pixel tiles where 4 or more fit; with more
    weights than its ``band_bytes`` each step is a parallel loop of its own (the padded
    copy, the input transform, the products, the output transform), and step by step
    the small layers compute what their unscheduled computation does too."""
    big = Winograd((1, 12, 7, 7, 16), 12, 16, 1, 2, K.Epilogue((("bias",),)))
    assert not big.banded and 4 * int(np.prod(big.weight_shape)) > (1 << 20)
    assert scheduled_func(big, big.tiles(16)[0]).script().count("T.parallel(") == 4
    sevens = Winograd((1, 2, 14, 14, 16), 2, 16, 1, 2, K.Epilogue((("bias",),)))
    assert sevens.band_tiles() == 7  # (7 x 7 tiles, 7 bands of a row)
    assert [tile.pixel_tiles for tile in sevens.tiles(16)[:4]] == [7] * 4
    assert sevens.tiles(8)[0].pixel_tiles == 4  # (AVX2: 7 tiles x 2 vectors exceed 12)
    unpadded = Winograd((1, 1, 10, 10, 16), 1, 16, 0, 4, K.Epilogue((("bias",),)))
    target = make_target()
    if runs_here(target):  # (8 x 8 outputs in 4 x 4 tiles: nothing to pad)
        _assert_tiles_compute_the_same(unpadded, unpadded.tiles(vector_lanes(target))[:2],
                                       target)
    for kernel in SMALL_WINOGRAD + [sevens, unpadded]:
        assert kernel.banded
        n, rows, cols = kernel.out_shape[0], -(-kernel.out_shape[2] // kernel.m), \
            -(-kernel.out_shape[3] // kernel.m)
        band = kernel.band_tiles()
        assert rows * cols % band == 0 and band % cols == 0  # whole tile rows
        for lanes in (8, 16):
            for tile in kernel.tiles(lanes)[:2]:
                script = scheduled_func(kernel, tile).script()
                assert script.count("T.parallel(") == 1, tile
                assert re.search(rf"T\.parallel\({n * rows * cols // band}\)", script), tile
    for kernel in [replace(k, band_bytes=0) for k in SMALL_WINOGRAD + [sevens]]:
        assert not kernel.banded
        if runs_here(target):
            _assert_tiles_compute_the_same(kernel, kernel.tiles(vector_lanes(target))[:4],
                                           target)


def test_winograd_layers_run_in_bands_up_to_half_of_the_l2_cache(tmp_path):
    """A Winograd layer runs in bands while its transformed weights take at most half of
    a core's L2 cache, as Linux lists it (1 MB where it is not known: cross-compiling);
    the lowering gives each Winograd layer that bound, and ``compile_symbol`` the one
    of its target. Between bounds of 1 MB and 512 KB only layers of more than 512 KB
    leave the bands, among them Oct-ResNet-50 alpha .5's stage-2 64 -> 64 channel
    F(4x4) layers on 28 px (590 KB of transformed weights)."""
    for index, (level, kind, size) in enumerate([("1", "Data", "48K"),
                                                 ("1", "Instruction", "32K"),
                                                 ("2", "Unified", "1024K"),
                                                 ("3", "Unified", "32768K")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (folder / name).write_text(value + "\n")
    host = make_target()
    if runs_here(host):
        assert l2_cache_bytes(host, str(tmp_path)) == 1 << 20
        assert l2_cache_bytes(host, str(tmp_path / "missing")) is None
    foreign = make_target("sapphirerapids")  # (AMX: cross-compiled on most machines)
    if not runs_here(foreign):
        assert l2_cache_bytes(foreign) is None
    assert (band_bytes(None), band_bytes(1 << 20)) == (BANDED_WEIGHT_BYTES, 1 << 19)
    network = zoo_network("resnet50_v2", 0.5, classes=10)
    lanes = vector_lanes(host)
    programs = {limit: lower(network.symbol.tojson(), network.params, (1, 3, 224, 224), lanes,
                             band_bytes=limit) for limit in (1 << 20, 1 << 19)}
    layers = {limit: [c.kernel for c in p.calls if isinstance(c.kernel, Winograd)]
              for limit, p in programs.items()}
    assert all(k.band_bytes == limit for limit, ks in layers.items() for k in ks)
    moved = [a for a, b in zip(layers[1 << 20], layers[1 << 19]) if a.banded != b.banded]
    assert all(a.banded and 4 * np.prod(a.weight_shape) > (1 << 19) for a in moved)
    assert (64, 28, 4) in {(a.data[1] * a.data[4], a.data[2], a.m) for a in moved}
    mini = zoo_network("resnet10_v2_mini", 0.25, classes=10)
    compiled = compile_symbol(mini.symbol, mini.params, (1, 3, 112, 112), cache=TileCache(
        str(tmp_path / "tiles.json")), budget=1)
    expected = band_bytes(l2_cache_bytes(host))
    assert {c.kernel.band_bytes for c in compiled.program.calls
            if isinstance(c.kernel, Winograd)} == {expected}


@pytest.mark.parametrize("m, size, paired", [(2, 7, False), (2, 10, False), (4, 14, False),
                                             (4, 17, False), (2, 9, True), (4, 14, True)])
def test_winograd_equals_direct_convolution(m, size, paired):
    """Winograd's transforms against the direct convolution's definition, on odd and
    even sizes (partial output tiles) and 8-channel blocks; ``paired``: 3 output
    blocks of 8 channels, the products of two in each 16-lane accumulator (weights
    packed by pairs, then transformed, as the lowering packs them)."""
    target = make_target()
    if not runs_here(target):
        pytest.skip("host target not runnable")
    epilogue = K.Epilogue((("bias",),))
    data = (1, 3, size, size, 8)
    blocks, block = (3, 8) if paired else (2, 16)
    direct = K.Conv(data, blocks, block, 3, 1, 3, 1, 1, epilogue)
    fast = Winograd(data, blocks, block, 1, m, epilogue, paired)
    rng = np.random.default_rng(m * size)
    x = rng.standard_normal(data).astype(np.float32)
    weight = rng.standard_normal(direct.weight_shape).astype(np.float32)
    bias = rng.standard_normal((blocks, block)).astype(np.float32)

    def run(kernel, func, w):
        lib = tvm.compile(tvm.IRModule({"main": func}), target=target)
        args = [tvm.runtime.tensor(a) for a in (x, w, bias)]
        args.append(tvm.runtime.tensor(np.zeros(kernel.out_shape, np.float32)))
        (lib.jit() if hasattr(lib, "jit") else lib)["main"](*args)
        return args[-1].numpy()

    inputs, output = direct.compute()
    expected = run(direct, te.create_prim_func(inputs + [output]), weight)
    packed = transform_weight(_pair_blocks(weight) if paired else weight, m)
    assert packed.shape == fast.weight_shape
    got = run(fast, scheduled_func(fast, fast.tiles(16 if paired else 8)[0]), packed)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


WINOGRAD_WEIGHT_BYTES = """
import hashlib, sys
import numpy as np
from octconv.deploy.winograd import transform_weight
packed = np.random.default_rng(0).standard_normal((32, 32, 3, 3, 16, 16), np.float32)
print(" ".join(hashlib.sha256(transform_weight(packed, m).tobytes()).hexdigest()
               for m in (2, 4)))
"""


def test_winograd_weights_do_not_depend_on_the_blas_thread_count():
    """The transformed weights of a 512-channel layer are the same bytes in a process
    with one BLAS thread and in one with two: the library cache names a library by
    them, so a network compiled in either finds the other's library."""
    printed = {threads: subprocess.run(
        [sys.executable, "-c", WINOGRAD_WEIGHT_BYTES], check=True, capture_output=True,
        text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS=str(threads),
                                      OPENBLAS_NUM_THREADS=str(threads))).stdout
        for threads in (1, 2)}
    assert printed[1] == printed[2]


def test_few_channel_large_maps_get_a_tile_over_all_output_blocks():
    """A 16 -> 96 1x1 convolution at 112 px (MobileNet v2's first expansion): within
    the default search budget of 4 a tile holds all 6 output blocks; a 512 -> 1024 one
    at 7 px (whose weights per block fill L1) is offered none wider than 4 blocks."""
    bias = K.Epilogue((("bias",),))
    expansion = K.Conv((1, 1, 112, 112, 16), 6, 16, 1, 1, 1, 1, 0, bias)
    for lanes in (8, 16):
        assert any(tile.out_blocks == 6 for tile in expansion.tiles(lanes)[:4]), lanes
    deep = K.Conv((1, 32, 7, 7, 16), 64, 16, 32, 1, 1, 1, 0, bias)
    assert max(tile.out_blocks for tile in deep.tiles(16)) <= 4


def _parallel_extents(kernel, tile):
    """The extents of the parallel loops of ``kernel`` scheduled with ``tile``."""
    script = scheduled_func(kernel, tile).script()
    return [int(extent) for extent in re.findall(r"T\.parallel\((\d+)\)", script)]


def test_input_channel_blocked_tiles_share_a_one_block_layer_among_threads():
    """A layer of one output block at batch 1 (a 144 -> 16 projection at 56 px, as narrow
    as the MobileNets' first projections): every candidate tile, the input-channel
    blocked ones included, leaves at least 7 parallel iterations (a divisor of the
    map's tile rows near 8) for the threads, not one."""
    kernel = K.Conv((1, 9, 56, 56, 16), 1, 16, 9, 1, 1, 1, 0, K.Epilogue((("bias",),)))
    tiles = kernel.tiles(16)
    assert any(tile.in_blocks < 9 for tile in tiles)
    for tile in tiles:
        extents = _parallel_extents(kernel, tile)
        assert extents and extents[0] >= 7, (tile, extents)


def _stmts(node):
    """``node`` and every statement inside it (loops, blocks, sequences, branches)."""
    yield node
    for field in ("body", "block", "then_case", "else_case", "init"):
        child = getattr(node, field, None)
        if isinstance(child, tvm.tirx.Stmt):
            yield from _stmts(child)
    for child in getattr(node, "seq", ()):
        yield from _stmts(child)


def _first_thread_range(kernel, tile, block, axis, threads=2):
    """The lowest and highest index along output ``axis`` (1: channel blocks, 2: rows)
    that the first of ``threads`` threads computes in ``block`` of ``kernel`` scheduled
    with ``tile``, and the axis's extent: TVM runs a parallel loop in equal contiguous
    ranges, one per thread; the index is bounded by TVM's integer analysis over the
    first range of the parallel loop and every other loop."""
    from tvm.sym.analyzer import Analyzer
    stmts = list(_stmts(scheduled_func(kernel, tile).body))
    analyzer = Analyzer()
    for loop in (s for s in stmts if isinstance(s, tvm.tirx.For)):
        extent = int(loop.extent)
        if loop.kind == tvm.tirx.ForKind.PARALLEL:
            extent = -(-extent // threads)
        analyzer.bind(loop.loop_var, tvm.ir.Range.from_min_extent(int(loop.min), extent))
    realize = next(s for s in stmts if hasattr(s, "iter_values")
                   and s.block.name_hint in (block, f"{block}_update"))
    bound = analyzer.const_int_bound(realize.iter_values[axis])
    return bound.min_value, bound.max_value, int(realize.block.iter_vars[axis].dom.extent)


@pytest.mark.parametrize("kernel, block", [
    (K.Conv((1, 4, 16, 16, 16), 3, 16, 4, 1, 1, 1, 0, K.Epilogue((("bias",),))), "epilogue"),
    (K.Conv((1, 2, 32, 32, 16), 4, 16, 2, 1, 3, 2, 1, K.Epilogue((("bias",),))), "epilogue"),
    (K.Depthwise((1, 4, 16, 16, 16), 3, 1, 1, K.Epilogue((("bias",),))), "epilogue"),
    (K.Pool((1, 3, 32, 32, 16), "max", 3, 2, 1, False), "pool"),
    (K.Pool((1, 3, 32, 32, 16), "avg", 2, 2, 0, False), "epilogue"),
    (K.Pointwise((1, 3, 16, 16, 16), K.Epilogue((("bias",), ("act", "relu")))), "epilogue"),
    (K.Upsample((1, 3, 8, 8, 16), (16, 16)), "epilogue"),
    (Winograd((1, 2, 16, 16, 16), 3, 16, 1, 2, K.Epilogue((("bias",),))), "epilogue"),
], ids=["conv1x1", "conv3x3-strided", "depthwise", "maxpool", "avgpool", "pointwise",
        "upsample", "winograd"])
def test_each_thread_computes_all_channels_of_a_band_of_rows(kernel, block):
    """On 2 threads, the first computes only the top half of the output rows (all their
    channel blocks), with every candidate tile: the band whose inputs it computed in
    the kernel before, in its own core's cache. (Split by channel blocks, the first
    thread computed every row of its blocks.)"""
    for tile in kernel.tiles(16):
        low, high, rows = _first_thread_range(kernel, tile, block, axis=2)
        assert (low, high) == (0, rows // 2 - 1), (tile, rows)


def test_threads_split_the_output_blocks_where_the_weights_outweigh_the_map():
    """A 512 -> 2048 1x1 convolution at 7 px (ResNet-50's last stage: 4 MB of weights,
    a 100 KB input map): the first of 2 threads computes every row of the first half
    of the output blocks, reading only their weights, with every candidate tile. A
    3x3 convolution on a larger map (more input than weights) splits by rows."""
    bias = K.Epilogue((("bias",),))
    deep = K.Conv((1, 32, 7, 7, 16), 128, 16, 32, 1, 1, 1, 0, bias)
    assert not deep.bands_first
    for tile in deep.tiles(16):
        assert _first_thread_range(deep, tile, "epilogue", axis=2) == (0, 6, 7), tile
        assert _first_thread_range(deep, tile, "epilogue", axis=1) == (0, 63, 128), tile
    assert K.Conv((1, 4, 56, 56, 16), 4, 16, 4, 1, 3, 1, 1, bias).bands_first


def test_kernels_reading_a_map_of_more_channels_than_pixels_split_its_blocks_as_its_maker():
    """A 14 px map of 384 channels (more channels than pixels, as in the MobileNets' 14
    and 7 px stages): the 1x1 convolution that makes it splits its output blocks among
    threads (its weights outweigh its input map), and so do the depthwise convolutions,
    poolings and point-wise kernels that read it: with every candidate tile, the first
    of 2 threads computes every row of the first half of the channel blocks, the blocks
    whose inputs it made. (Split by rows, it read half of them from the other core.)"""
    bias = K.Epilogue((("bias",),))
    data = (1, 24, 14, 14, 16)
    maker = K.Conv(data, 24, 16, 24, 1, 1, 1, 0, bias)
    readers = [(maker, "epilogue"),
               (K.Depthwise(data, 3, 1, 1, bias), "epilogue"),
               (K.Depthwise(data, 3, 2, 1, bias), "epilogue"),
               (K.Pool(data, "max", 3, 2, 1, False), "pool"),
               (K.Pool(data, "avg", 2, 2, 0, False), "pool"),
               (K.Pool(data, "avg", 2, 2, 0, False), "epilogue"),
               (K.Pointwise(data, K.Epilogue((("bias",), ("act", "relu")))), "epilogue")]
    for kernel, block in readers:
        for tile in kernel.tiles(16):
            assert _first_thread_range(kernel, tile, block, axis=1) == (0, 11, 24), \
                (kernel, block, tile)
            low, high, rows = _first_thread_range(kernel, tile, block, axis=2)
            assert (low, high) == (0, rows - 1), (kernel, block, tile)


def test_depthwise_rows_share_padded_input_in_chunks_that_leave_work_for_threads():
    """Stride 1: the most rows (up to 16, dividing the height) whose chunks and channel
    blocks still make 8 parallel iterations; stride 2: one row. Each parallel iteration
    of the scheduled kernel pads the input rows of its whole chunk (a chunk of ``rows``
    output rows reads (rows - 1) x stride + 3 of them), not those of one output row."""
    from tvm import s_tir

    def rows(data, stride):
        kernel = K.Depthwise(data, 3, stride, 1, K.Epilogue((("bias",),)))
        chunk = kernel.chunk_rows()
        assert {tile.rows for tile in kernel.tiles(16)} == {chunk}
        inputs, output = kernel.compute()
        sch = s_tir.Schedule(te.create_prim_func(inputs + [output]))
        kernel.schedule(sch, kernel.tiles(16)[0])
        parallel, padded_rows = (int(sch.get(loop).extent)
                                 for loop in sch.get_loops(sch.get_sblock("pad"))[:2])
        assert parallel == data[0] * data[1] * kernel.out_shape[2] // chunk
        assert padded_rows == (chunk - 1) * stride + 3
        return chunk

    assert rows((1, 2, 112, 112, 16), 1) == 16  # 2 blocks x 7 chunks
    assert rows((1, 4, 12, 12, 16), 1) == 6     # 4 blocks x 2 chunks
    assert rows((1, 8, 7, 7, 8), 1) == 7        # the whole map: 8 blocks
    assert rows((1, 1, 8, 8, 8), 1) == 1        # 1 block: a chunk per row
    assert rows((1, 60, 14, 14, 16), 2) == 1


def test_a_batch_of_pooled_maps_shares_each_weight_among_the_images_of_a_tile():
    """A classifier at batch 8 after global pooling, as a 1x1 convolution (1280 -> 1000
    channels) or a dense layer: a register tile holds all 8 images (each weight loaded
    once for them), so the only parallel loop is over the 63 output blocks, and the
    convolution's tile is searched at its batch. At batch 1 nothing changes."""
    bias = K.Epilogue((("bias",),))
    conv = K.Conv((8, 80, 1, 1, 16), 63, 16, 80, 1, 1, 1, 0, bias)
    assert conv.workload() == conv
    best = conv.tiles(16)[0]
    assert best.cols == 8 and _parallel_extents(conv, best) == [63]
    single = K.Conv((1, 80, 1, 1, 16), 63, 16, 80, 1, 1, 1, 0, bias)
    assert single.tiles(16)[0].cols == 1
    dense = K.Dense((8, 80, 1, 1, 16), 63, 1000)
    assert dense.tiles(16) == [8] and _parallel_extents(dense, 8) == [63]
    # images in a tile: a divisor of the batch whose 16-lane accumulators (one zmm
    # each, or two ymm) fit 24 of 32 zmm or 12 of 16 ymm
    assert [K.Dense((n, 80, 1, 1, 16), 63, 1000).tiles(16)[0] for n in (1, 6, 17, 25, 32)] \
        == [1, 6, 17, 5, 16]
    assert [K.Dense((n, 80, 1, 1, 16), 63, 1000).tiles(8)[0] for n in (6, 8, 32)] \
        == [6, 4, 4]


def test_tuning_workload_stays_at_batch_1_until_the_data_outgrow_the_cache():
    """The tile of a batched kernel is searched at batch 1 (one search for all batch
    sizes) while its input and output (4 bytes a value) fit in 16 MB, half of a 32 MB
    L3; beyond that at its own batch, where the map streams through memory, and where
    batch 1 would stream its weights (``Conv.streams_weights``)."""
    relu = K.Epilogue((("bias",), ("act", "relu6")))
    for batch, tuned_at in ((1, 1), (2, 1), (8, 8)):
        # 16 -> 96 channels at 112 px: (16 + 96) * 112 * 112 * 4 bytes = 5.6 MB an image
        kernel = K.Conv((batch, 1, 112, 112, 16), 6, 16, 1, 1, 1, 1, 0, relu)
        assert kernel.workload() == K.Conv((tuned_at, 1, 112, 112, 16), 6, 16, 1, 1, 1, 1, 0,
                                           K.Epilogue((("bias",),))), batch
    small = K.Conv((8, 16, 7, 7, 16), 2, 16, 16, 1, 1, 1, 0, relu)
    assert tuning_workload(small, 16).data == (1, 16, 7, 7, 16)
    # unless batch 1 offers other candidate tiles: it streams its weights (more weights
    # than input on a 7 px map), the batch does not
    streaming = K.Conv((8, 16, 7, 7, 16), 6, 16, 16, 1, 1, 1, 0, relu)
    assert tuning_workload(streaming, 16).data == (8, 16, 7, 7, 16)
    assert tuning_workload(streaming, 16).epilogue == K.Epilogue((("bias",),))


def test_channel_blocks_follow_the_vector_width_and_never_pad_the_alpha_125_split():
    """The layout rule: 16-channel blocks where they fit, else 8-channel blocks where
    they pad less, so that no tensor of Oct-ResNet-50 at alpha .125 (56 + 8 channels in
    its first stage) carries padding, Oct-MobileNet v1 0.75's low branches at alpha
    .375 (18 and 36 channels) carry 6 and 4 padded channels, not 14 and 12, and its
    branches of 72 and 120 channels none (not padded to 80 and 128 for 16-lane
    blocks, which 8-channel blocks paired in 16-lane accumulators make moot): no count
    is padded beyond a whole number of 8-channel blocks."""
    def blocking(channels, lanes):
        layout = K.Layout.for_channels(channels, lanes)
        return layout.block, layout.padded

    for channels in range(1, 1100):
        for lanes in (8, 16):
            assert blocking(channels, lanes)[1] == -(-channels // 8) * 8, channels
    assert blocking(120, 16) == (8, 120)
    assert blocking(72, 16) == (8, 72)
    assert blocking(120, 8) == (8, 120)
    assert blocking(56, 16) == (8, 56)
    assert blocking(24, 16) == (8, 24)
    assert blocking(18, 16) == (8, 24)
    assert blocking(36, 16) == (8, 40)
    assert blocking(9, 16) == (16, 16)  # 8-channel blocks would pad as much
    assert blocking(30, 16) == (16, 32)
    assert blocking(18, 8) == (8, 24)
    network = zoo_network("resnet50_v2", 0.125, classes=10, size=32)
    program = lower(network.symbol.tojson(), network.params, (1, 3, 32, 32), 16)
    layouts = {arg.layout for call in program.calls for arg in call.args
               if isinstance(arg, Tensor)}
    assert {(56, 8), (8, 8)} <= {(t.channels, t.block) for t in layouts}
    assert all(t.padded == t.channels for t in layouts)


def three_by_three_layers():
    """3x3 convolutions with ReLU on a 16 px input: 3 -> 16 and 16 -> 16 channels at 16
    px, 16 -> 32 and 32 -> 32 at 8 px, 32 -> 32 at 4 px (max pooling between sizes)."""
    x = mx.sym.var("data")
    layers = [(16, 16), (16, 16), (8, 32), (8, 32), (4, 32)]  # (input size, out channels)
    for j, (size, channels) in enumerate(layers):
        if j and size < layers[j - 1][0]:
            x = mx.sym.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="max")
        x = mx.sym.Activation(mx.sym.Convolution(x, num_filter=channels, kernel=(3, 3),
                                                 pad=(1, 1), name=f"c{j}"), act_type="relu")
    return small_network(x, 0.2)


def conv_kinds(program):
    return [(type(c.kernel).__name__, getattr(c.kernel, "m", None)) for c in program.calls
            if isinstance(c.kernel, (K.Conv, Winograd))]


def test_winograd_where_the_rule_says_and_equal_to_mxnet(cache):
    """Without measurements the documented rule (F(4x4) on maps of >= 14 px with >= 16
    channels, F(2x2) on 7-13 px maps with >= 32, direct otherwise) picks each 3x3
    convolution's kernel, and the network so lowered equals MXNet."""
    if not runs_here(make_target()):
        pytest.skip("host target not runnable")
    network = three_by_three_layers()
    program = lower(network.symbol.tojson(), network.params, (1, 3, 16, 16),
                    vector_lanes(make_target()))
    # 3 -> 16 (3 input channels), 16 -> 16 at 16 px, 16 -> 32 and 32 -> 32 at 8 px,
    # 32 -> 32 at 4 px
    rule = [("Conv", None), ("Winograd", 4), ("Conv", None), ("Winograd", 2), ("Conv", None)]
    assert conv_kinds(program) == rule
    x = image(16)
    compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1)
    assert conv_kinds(compiled.program) == rule
    assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))


def test_3x3_algorithms_are_measured_once_recorded_and_followed(tmp_path, monkeypatch):
    """A compile that searches tiles measures, for each 3x3 stride-1 convolution with 16
    channels or more, the algorithms its map allows (direct; F(2x2) from 7 px; F(4x4)
    from 14 px) with the weights out of cache and records the choice, timing each
    candidate in the library its tile search built (no other build, on one core as on
    two); with the tiles known and no choice recorded, the candidates are built for the
    measurement alone; a compile with both recorded measures nothing; the recorded
    choice is what the network runs, and every choice equals MXNet."""
    if not runs_here(make_target()):
        pytest.skip("host target not runnable")
    network = three_by_three_layers()
    x = image(16)
    path = str(tmp_path / "tiles.json")
    built = []  # the candidates each measurement built for itself
    build_candidates = algorithms._build

    def build(functions, *args):
        built.append(sorted(functions))
        return build_candidates(functions, *args)

    monkeypatch.setattr(algorithms, "_build", build)
    first = compile_symbol(network.symbol, network.params, x.shape, cache=TileCache(path),
                           budget=2)
    assert built == []
    with monkeypatch.context() as one_core:
        one_core.setattr(tuning, "available_cores", lambda: 1)
        compile_symbol(network.symbol, network.params, x.shape,
                       cache=TileCache(str(tmp_path / "one_core.json")), budget=2)
    assert built == []
    (records,) = json.load(open(path)).values()
    choices = {key: record["value"] for key, record in records.items()
               if " kernel choice " in key}
    # 16 -> 16 at 16 px (3 algorithms), 16 -> 32 and 32 -> 32 at 8 px (2 each), each
    # recorded as the chosen candidate's name (16-channel blocks: none paired)
    assert len(choices) == 3 and all(v in ("direct", "F(2x2)", "F(4x4)")
                                     for v in choices.values())
    tiles_only = TileCache(str(tmp_path / "tiles_only.json"))
    for key, record in records.items():
        if key not in choices:
            tiles_only.put(make_target(), key, record["tile"], record["ms"])
    measured = compile_symbol(network.symbol, network.params, x.shape, cache=tiles_only,
                              budget=2)
    assert measured.stats["searches"] == 0 and len(built) == 1 and len(built[0]) == 3 + 2 + 2
    (remeasured,) = tiles_only.records.values()
    assert remeasured.keys() == records.keys()
    kinds = conv_kinds(first.program)  # 3 input channels, then 4 px: no choice
    assert kinds[0] == kinds[-1] == ("Conv", None)
    again = compile_symbol(network.symbol, network.params, x.shape, cache=TileCache(path),
                           budget=2)
    assert again.stats["searches"] == 0 and again.stats["library"] == "cached"
    for choice, kinds in (("direct", [("Conv", None)] * 5),
                          ("F(2x2)", [("Conv", None)] + [("Winograd", 2)] * 3 + [("Conv", None)])):
        cache = TileCache(path)
        for key in choices:
            cache.put_value(make_target(), key, choice)
        compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache,
                                  budget=2)
        assert conv_kinds(compiled.program) == kinds
        assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))


def test_an_odd_count_of_8_channel_blocks_is_offered_paired_and_unpaired():
    """With 16 lanes a convolution of an odd count of 8-channel output blocks is offered
    unpaired and paired (the rule's pick, as before any measurement), a 3x3 stride-1 one
    with each Winograd algorithm so; an even count only paired; 16-channel blocks, and
    8 lanes, only unpaired. Each candidate's name tells its algorithm and pairing."""
    from octconv.deploy.algorithms import candidates, label
    epilogue = K.Epilogue((("bias",),))
    odd = K.Conv((1, 2, 16, 16, 16), 3, 8, 2, 1, 1, 1, 0, epilogue)
    kernels, pick = candidates(odd, 16, (16, 16), 32, 24, BANDED_WEIGHT_BYTES, False)
    assert [label(k) for k in kernels] == ["direct", "direct paired"] and pick.paired
    assert [label(k) for k in candidates(odd, 8, (16, 16), 32, 24, BANDED_WEIGHT_BYTES,
                                         False)[0]] == ["direct"]
    even = replace(odd, out_blocks=4)
    assert [label(k) for k in candidates(even, 16, (16, 16), 32, 32, BANDED_WEIGHT_BYTES,
                                         False)[0]] == ["direct paired"]
    wide = replace(odd, out_blocks=2, out_block=16)
    assert [label(k) for k in candidates(wide, 16, (16, 16), 32, 32, BANDED_WEIGHT_BYTES,
                                         False)[0]] == ["direct"]
    three = K.Conv((1, 2, 16, 16, 16), 3, 8, 2, 1, 3, 1, 1, epilogue)
    kernels, pick = candidates(three, 16, (16, 16), 32, 24, BANDED_WEIGHT_BYTES, True)
    assert sorted(label(k) for k in kernels) == sorted(
        f"{name}{paired}" for name in ("direct", "F(2x2)", "F(4x4)")
        for paired in ("", " paired"))
    assert label(pick) == "F(4x4) paired"  # the fixed rule on a 16 px map, paired
    assert label(kernels[0]) == "direct"  # the workload that keys the choice


def odd_block_layers():
    """3 -> 24 channels by a 3x3 stride-2 convolution (3 blocks of 8 with 16 lanes),
    then 24 -> 40 by a 1x1 one (5 blocks) and 40 -> 16 (one block of 16), with ReLUs,
    on a 16 px input."""
    x = mx.sym.var("data")
    for j, (channels, k, s) in enumerate(((24, 3, 2), (40, 1, 1), (16, 1, 1))):
        x = mx.sym.Activation(mx.sym.Convolution(x, num_filter=channels, kernel=(k, k),
                                                 stride=(s, s), pad=(k // 2, k // 2),
                                                 name=f"c{j}"), act_type="relu")
    return small_network(x, 0.2)


def test_pairing_an_odd_count_of_blocks_is_measured_recorded_and_followed(tmp_path,
                                                                       monkeypatch):
    """On 16 lanes a compile that searches tiles times each convolution of an odd count
    of 8-channel output blocks paired and unpaired with its weights out of cache, and
    records the faster; the recorded choice is what the network runs, its weights packed
    to match, and either choice equals MXNet."""
    target = make_target()
    if not runs_here(target) or vector_lanes(target) != 16:
        pytest.skip("needs a host with 16-lane (AVX-512) vectors")
    network = odd_block_layers()
    x = image(16)
    timed = {}  # (input shape, paired) -> ms, as the measurement timed each candidate
    time_cold = algorithms.time_cold

    def noted(module, name, args, *rest):
        ms = time_cold(module, name, args, *rest)
        data, weight = (tuple(a.shape) for a in args[:2])
        timed[data, weight[-1] == 16] = ms  # paired weights: 16 lanes of a pair of blocks
        return ms

    monkeypatch.setattr(algorithms, "time_cold", noted)
    path = str(tmp_path / "tiles.json")
    compile_symbol(network.symbol, network.params, x.shape, cache=TileCache(path), budget=2)
    (records,) = json.load(open(path)).values()
    choices = {key: record["value"] for key, record in records.items()
               if " kernel choice " in key}
    assert len(choices) == 2 and len(timed) == 4  # 3 and 5 blocks; 16 channels do not pair
    for key, choice in choices.items():
        times = {paired: ms for (data, paired), ms in timed.items() if f"data={data}," in key}
        assert len(times) == 2
        assert choice == ("direct paired" if min(times, key=times.get) else "direct")
    for choice in ("direct", "direct paired"):
        cache = TileCache(path)
        for key in choices:
            cache.put_value(target, key, choice)
        compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache,
                                  budget=2)
        eights = [c.kernel for c in compiled.program.calls
                  if isinstance(c.kernel, K.Conv) and c.kernel.out_block == 8]
        assert [k.out_blocks for k in eights] == [3, 5]
        assert all(k.paired == (choice == "direct paired") for k in eights)
        assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))


def test_low_map_paths_run_as_one_convolution_and_equal_mxnet(cache):
    """OctConv's l2h and l2l paths read the low map in one kernel call, their output
    channels side by side (a 3x3 layer by Winograd, a 1x1 layer with biases); two
    convolutions of one tensor whose results are concatenated stay two calls; the
    network equals MXNet."""
    from octconv.symbol import oct_conv
    if not runs_here(make_target()):
        pytest.skip("host target not runnable")

    def relu(pair):
        return tuple(mx.sym.Activation(t, act_type="relu") for t in pair)

    x = relu(oct_conv((mx.sym.var("data"), None), "a", 64, 3, 3, padding=1, alpha_out=0.5))
    x = relu(oct_conv(x, "b", 64, 3, 64, padding=1, alpha_in=0.5, alpha_out=0.5))
    x = relu(oct_conv(x, "c", 64, 1, 64, alpha_in=0.5, alpha_out=0.5, use_bias=True))
    hi, _ = oct_conv(x, "d", 32, 1, 64, alpha_in=0.5)
    pair = [mx.sym.Convolution(hi, num_filter=16, kernel=(1, 1), name=f"e{j}") for j in range(2)]
    network = small_network(mx.sym.concat(*pair, dim=1), 0.2)
    program = lower(network.symbol.tojson(), network.params, (1, 3, 16, 16),
                    vector_lanes(make_target()))
    convs = [c for c in program.calls if isinstance(c.kernel, (K.Conv, Winograd))]
    readers = {}
    for call in convs:
        readers.setdefault(call.args[0].index, []).append(call)
    low = {i: calls for i, calls in readers.items() if calls[0].args[0].size == (8, 8)}
    # 8 px maps read: a's pooled input (h2l); b's pooled high map (h2l); b's and c's low
    # map (l2h + l2l); d's low map (l2h); each by one call. c's h2l path, a 1x1
    # convolution, pools b's high map as it reads it.
    assert sorted(len(calls) for calls in low.values()) == [1] * 5
    assert [c.out_shape[2:4] for c in convs
            if isinstance(c.kernel, K.Conv) and c.kernel.pooled] == [(8, 8)]
    merged = [c.kernel for calls in low.values() for c in calls
              if c.out_shape[1] * c.out_shape[4] == 64]  # 32 + 32 channels
    assert sorted(type(k).__name__ for k in merged) == ["Conv", "Winograd"]
    assert convs[-1].args[0] == convs[-2].args[0]  # e0 and e1, apart
    x = image(16)
    compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1)
    assert_close_to_mxnet(compiled.run(x), mxnet_logits(network, x))


def test_profile_accounts_for_every_call_and_multiply_add(cache):
    """The per-kernel profile covers every kernel call once per network call, and its
    multiply-adds add up to the complexity counter's count on the Symbol graph; its
    bytes of weights hold at least every convolution's and the classifier's weights
    (more: padding, Winograd's transformed weights, biases), the classifier's exactly
    as Dense packs them; every kernel of the library also runs alone on arrays of its
    own shapes (TVM checks them against the function's), in cache and flushed from
    it; the library reused on another thread count."""
    if not runs_here(make_target()):
        pytest.skip("host target not runnable")
    network = network_("resnet10_v2_mini", 0.0, 32)
    x = image(32)
    compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1)
    rows = compiled.profile(x, runs=3, alone=True)
    assert sum(r["calls"] for r in rows) == len(compiled.program.calls)
    assert all(r["alone_ms"] > 0 and r["cold_ms"] > 0 for r in rows)
    weights = {k: v for k, v in network.params.items() if k.endswith("weight")}
    assert sum(r["weight_bytes"] for r in rows) >= 4 * sum(v.size for v in weights.values())
    fc = next(v for k, v in weights.items() if v.ndim == 2)  # (classes, features)
    blocks = -(-fc.shape[0] // 16)  # (J/16, features, 16) and a bias of (J/16, 16)
    dense = next(r for r in rows if r["function"].startswith("dense"))
    assert dense["weight_bytes"] == 4 * blocks * 16 * (fc.shape[1] + 1)
    assert "alone_ms" not in compiled.profile(x, runs=1)[0]
    assert "alone_1_thread_ms" not in rows[0]  # (one thread: nothing to compare)
    two = compiled.with_threads(2).profile(x, runs=1, alone=True)
    assert {r["function"] for r in two} == {r["function"] for r in rows}
    assert all(r["alone_ms"] > 0 and r["alone_1_thread_ms"] > 0 for r in two)
    assert tvm.get_global_func("runtime.NumThreads")() == 2  # switched back after it
    assert sum(r["macs"] for r in rows) == network.macs(32)
    assert all(r["ms"] > 0 for r in rows)
    assert [r["ms"] for r in rows] == sorted((r["ms"] for r in rows), reverse=True)
    # the same library on two threads: outer loops split, every sum in the same order
    np.testing.assert_array_equal(compiled.with_threads(2).run(x), compiled.run(x))
    # a timing runner switches TVM's pool to its own thread count before its timed call
    two, one = TVMRunner(compiled.with_threads(2), x), TVMRunner(compiled, x)
    assert two.prepare()  # (it says it switched)
    assert tvm.get_global_func("runtime.NumThreads")() == 2
    assert one.prepare() and not one.prepare()
    assert tvm.get_global_func("runtime.NumThreads")() == 1
    assert not use_threads(1) and use_threads(2) and not use_threads(2)


MORE_THREADS_THAN_CORES = """
import json, sys
import numpy as np
import tvm
from octconv.deploy import TileCache, compile_network
from octconv.deploy.threads import available_cores, use_threads
threads = available_cores() + 1
compiled = compile_network("resnet10_v2_mini", 0.0, classes=10, size=32, threads=threads,
                           cache=TileCache(sys.argv[1]), budget=2)
x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
out = {"searches": compiled.stats["searches"],
       "same": bool(np.array_equal(compiled.run(x), compiled.with_threads(1).run(x)))}
try:
    compiled.with_threads(threads + 2).run(x)
except ValueError as err:
    out["error"] = str(err)
use_threads(1)  # after the refusal, one thread means one again
out["one"] = tvm.get_global_func("runtime.NumThreads")()
print(json.dumps(out))
"""


def test_a_compile_for_more_threads_than_cores_runs_on_them(tmp_path):
    """A fresh process compiles for one thread more than it has cores: the tile search
    times its kernels on one thread first, yet the network then runs on all the threads
    asked for (the pool was sized for them), as on one; more than the pool holds is a
    ValueError that says how many it runs, after which one thread is one again."""
    if not runs_here(make_target()):
        pytest.skip("host target not runnable")
    out = subprocess.run([sys.executable, "-c", MORE_THREADS_THAN_CORES,
                          str(tmp_path / "tiles.json")], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout
    result = json.loads(out.splitlines()[-1])
    threads = len(os.sched_getaffinity(0)) + 1
    assert result["searches"] > 0 and result["same"]
    assert f"runs at most {threads} threads, not {threads + 2}" in result["error"]
    assert result["one"] == 1


def test_idle_wait_outlasts_a_spinning_thread_and_its_limit_holds():
    """``wait_until_idle`` returns only once no other thread of the process burns CPU
    (a thread hashing with the GIL released, as a runtime's spinning worker would), at
    once when none does, and after ``limit`` seconds at most. (Up to three tries: on a
    2-core machine busy with the other test process the spinning thread may get no
    core for a whole window, and a wait that ends then is right to end.)"""
    import hashlib
    import threading

    def spin(seconds):
        block, end = bytes(1 << 18), time.perf_counter() + seconds
        while time.perf_counter() < end:
            hashlib.sha256(block).digest()

    tries = []
    for _ in range(3):
        worker = threading.Thread(target=spin, args=(0.2,))
        worker.start()
        waited = wait_until_idle()
        tries.append((not worker.is_alive(), round(waited, 3)))
        worker.join()
        if tries[-1][0] and 0.15 < waited < 1.0:
            break
    assert tries[-1][0] and 0.15 < tries[-1][1] < 1.0, tries
    assert wait_until_idle() < 0.1
    worker = threading.Thread(target=spin, args=(0.5,))
    worker.start()
    assert wait_until_idle(limit=0.05) < 0.1
    worker.join()


def test_serving_times_request_threads_at_once_and_checks_every_output():
    """``time_serving`` on callables that sleep (as a library's kernels release the
    GIL): a callable's request threads' calls overlap, its rounds alternate with the
    other callable's, each round gives images/s for one thread and for all, the gain is
    the ratio of their medians; a callable whose output depends on the calling thread,
    or that fails there, is a RuntimeError naming it."""
    active, most, lock, order = Counter(), Counter(), threading.Lock(), []

    def sleeper(name, seconds):
        def run(x):
            with lock:
                active[name] += 1
                most[name] = max(most[name], active[name])
                if not order or order[-1] != name:
                    order.append(name)
            time.sleep(seconds)
            with lock:
                active[name] -= 1
            return x.sum(axis=(1, 2, 3))
        return run

    x = np.ones((2, 3, 4, 4), np.float32)
    results = time_serving({"a": sleeper("a", 0.01), "b": sleeper("b", 0.002)}, x,
                           requests=3, rounds=3, calls=2)
    assert most == {"a": 3, "b": 3}  # a callable's three request threads in a call at once
    assert order[-8:] == ["a", "b"] * 4  # the callables take turns, round after round
    assert list(results) == ["a", "b"]
    for result in results.values():
        assert result["calls"] == 2 and len(result["one"]) == len(result["many"]) == 3
        assert result["gain"] == pytest.approx(np.median(result["many"])
                                               / np.median(result["one"]))
        low, high = result["interval"]
        assert 0 < low <= high
    assert np.median(results["b"]["one"]) > 2 * np.median(results["a"]["one"])  # its own
    run = sleeper("a", 0.01)
    with pytest.raises(RuntimeError, match=r"^thread-bound: \d+ calls from request threads "
                                           r"gave another output than one call alone "
                                           r"\(first: another"):
        time_serving({"a": run, "thread-bound": lambda x: np.array([threading.get_ident()])},
                     x, requests=2, rounds=1, calls=2)
    main = threading.get_ident()

    def fails_elsewhere(x):
        if threading.get_ident() != main:
            raise MemoryError("out of memory")
        return x

    with pytest.raises(RuntimeError, match=r"first: MemoryError\('out of memory'\)"):
        time_serving({"f": fails_elsewhere}, x, requests=2, rounds=1, calls=2)
    with pytest.raises(ValueError, match="2 or more request threads, got 1"):
        time_serving({"a": run}, x, requests=1, rounds=1)


@pytest.mark.parametrize("steady", [True, False])
def test_interleave_prepares_each_runner_before_timing_it(steady):
    """A runner's ``prepare()`` comes first in its turn; where it says it changed
    something (a thread pool switched), one untimed call follows: after the idle wait
    with ``steady`` (the untimed call it makes anyway, so no call is added; here one,
    with no time to warm up), right after ``prepare()`` without."""
    events = []

    class Runner:
        def __init__(self, name, switches):
            self.name, self.switches = name, switches

        def prepare(self):
            events.append(("prepare", self.name))
            return self.switches

        def __call__(self):
            events.append(("call", self.name))

    times = interleave({"a": Runner("a", True), "c": Runner("c", False),
                        "b": lambda: events.append(("call", "b"))},
                       runs=3, warmup=1, steady=steady, warm=0)
    assert {key: len(ms) for key, ms in times.items()} == {"a": 3, "c": 3, "b": 3}
    turn = {True: [("prepare", "a"), ("call", "a"), ("call", "a"), ("prepare", "c"),
                   ("call", "c"), ("call", "c"), ("call", "b"), ("call", "b")],
            False: [("prepare", "a"), ("call", "a"), ("call", "a"), ("prepare", "c"),
                    ("call", "c"), ("call", "b")]}[steady]
    assert events == [("call", "a"), ("call", "c"), ("call", "b")] + turn * 3


class _SlowAfterOthers:
    """A runner whose call takes 30 ms unless the last call made by any of these
    runners was its own (as a runtime's call after another's finds its workers asleep
    and the other's data in the caches)."""
    last = None

    def __init__(self):
        self.calls = 0

    def __call__(self):
        if _SlowAfterOthers.last is not self:
            time.sleep(0.03)
        _SlowAfterOthers.last = self
        self.calls += 1


@pytest.mark.parametrize("steady", [False, True])
def test_interleave_times_the_steady_call_or_the_first_after_the_wait(steady):
    """By default (``steady``) an untimed call of the same runner comes before each
    timed call; without, each timed call is its runner's first after another's."""
    runners = {"a": _SlowAfterOthers(), "b": _SlowAfterOthers()}
    times = interleave(runners, runs=3, warmup=1, steady=steady, warm=0)
    assert [runners[k].calls for k in "ab"] == [1 + 3 * (2 if steady else 1)] * 2
    timed = times["a"] + times["b"]
    if steady:
        assert max(timed) < 15
    else:
        assert min(timed) >= 30


class _SlowAfterIdle:
    """A runner whose call takes 20 ms until it has been called for 30 ms without a
    gap of 8 ms, then 1 ms (as, after an idle wait, memory-bound work on this project's
    Intel Xeon VM, slow until it has run for 20-40 ms: results/NOTES.md, stop 49)."""

    def __init__(self):
        self.busy_since = self.last_end = -1.0
        self.calls = 0

    def __call__(self):
        now = time.perf_counter()
        if now - self.last_end > 0.008:
            self.busy_since = now
        time.sleep(0.02 if now - self.busy_since < 0.03 else 0.001)
        self.last_end = time.perf_counter()
        self.calls += 1


@pytest.mark.parametrize("warm", [None, 0])
def test_interleave_warms_a_runner_up_before_a_steady_call(warm):
    """Untimed calls go on until ``warm`` seconds have passed since the idle wait: by
    default long enough for a runner that needs 30 ms to be fast; with none, one
    untimed call comes first and the timed call is slow."""
    runner = _SlowAfterIdle()
    times = interleave({"a": runner}, runs=3, warmup=0,
                       **({} if warm is None else {"warm": warm}))["a"]
    if warm is None:
        assert max(times) < 10 and runner.calls >= 3 * 3, (times, runner.calls)
    else:
        assert min(times) >= 20 and runner.calls == 3 * 2, (times, runner.calls)


@pytest.mark.parametrize("name, batch", [("resnet18_v1", 1), ("mobilenetv2_0.25", 2)])
def test_gluoncv_vanilla_networks_equal_mxnet(name, batch, cache):
    """Strided convolutions (absent from the zoo, which pools first) and GluonCV's
    graphs (BatchNorm on the input, ReLU6 as clip, MobileNet v2's classifier a 1x1
    convolution, here on a batch)."""
    network = at_fan_in_scale(gluoncv_network(name, size=65))
    x = np.concatenate([image(65, seed) for seed in range(1, batch + 1)])
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
import os, sys, numpy as np
from octconv.deploy import load_library
out = load_library(sys.argv[1])(np.load(sys.argv[2]))
np.save(sys.argv[3], out)
assert "mxnet" not in sys.modules, "the library should not need MXNet"
print(os.environ.get("TVM_THREAD_POOL_SPIN_COUNT"))
"""


SERVE = """
import sys, threading, numpy as np, tvm
from octconv.deploy import load_library
run = load_library(sys.argv[1])
sys.setswitchinterval(1e-6)  # the threads interleave as finely as Python lets them
images = [np.random.RandomState(i).rand(*run.input_shape).astype("float32") for i in range(4)]
want = [run(x) for x in images]
wrong, counts = [], set()
inside = threading.Barrier(4, timeout=20)

def serve(k):
    first = [True]

    def meet(func, name, before, result, *args):  # called by this thread's VM at each kernel
        if first[0]:  # its first call waits, inside the call, until all four are inside one
            first[0] = False
            inside.wait()
        return 0

    run.vm.set_instrument(meet)
    for r in range(100):
        try:
            if not np.array_equal(run(images[(k + r) % 4]), want[(k + r) % 4]):
                wrong.append("wrong output")
        except Exception as error:  # (a thread's exception would end it silently)
            wrong.append(repr(error))
    counts.add(tvm.get_global_func("runtime.NumThreads")())  # this thread's pool

requests = [threading.Thread(target=serve, args=(k,)) for k in range(4)]
for thread in requests:
    thread.start()
for thread in requests:
    thread.join()
print(len(wrong), sorted(counts))
"""


def test_a_runners_input_array_is_aligned_and_shared_with_its_tvm_tensor():
    from octconv.deploy.compile import ALIGNMENT, _shared_input
    for shape in ((1, 3, 33, 33), (2, 3, 7, 5), (1, 1, 1, 1)):
        for _ in range(4):  # (NumPy places its arrays at various offsets)
            array, tensor = _shared_input(shape)
            assert array.ctypes.data % ALIGNMENT == 0 and array.shape == shape
            array[...] = np.random.default_rng(0).standard_normal(shape)
            np.testing.assert_array_equal(tensor.numpy(), array)


def test_library_reloads_in_a_fresh_process_without_mxnet(tmp_path, cache):
    network = network_("mobilenet_v2_100", 0.25, 33)
    x = image(33)
    compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1)
    library = compiled.export(str(tmp_path / "new" / "net.so"))  # (its folder made)
    assert os.listdir(tmp_path / "new") == ["net.so"]  # (no temporary file left)
    np.save(tmp_path / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "TVM_THREAD_POOL_SPIN_COUNT"}
    for spin_count, expected in ((None, str(SPIN_COUNT)), ("1234", "1234")):
        if spin_count:  # a count set by the user is left as it is
            env["TVM_THREAD_POOL_SPIN_COUNT"] = spin_count
        printed = subprocess.run([sys.executable, "-c", RELOAD, library, str(tmp_path / "x.npy"),
                                  str(tmp_path / "out.npy")], check=True, cwd=ROOT, env=env,
                                 capture_output=True, text=True).stdout
        assert printed.split() == [expected]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), compiled.run(x))
    # four request threads of a server calling it: their calls run at once (all four
    # are inside a call together), each output is the one of its input alone, each on
    # one thread of its own pool (concurrent calls of one VM crashed)
    served = subprocess.run([sys.executable, "-c", SERVE, library], cwd=ROOT,
                            capture_output=True, text=True)
    assert served.returncode == 0, served.stderr[-2000:]
    assert served.stdout.split("\n")[-2] == "0 [1]"
    reloaded = load_library(library)
    np.testing.assert_array_equal(reloaded(x), compiled.run(x))
    # inputs of another type or order are converted as they are copied in; each output
    # is an array of the caller's own, which later calls leave as it was
    first = reloaded(x)
    for other in (x.astype(np.float64), np.asfortranarray(x), x.tolist()):
        np.testing.assert_array_equal(reloaded(other), first)
    assert first.flags.writeable and first.flags.owndata
    kept = first.copy()
    assert not np.array_equal(reloaded(image(33, seed=2)), kept)
    np.testing.assert_array_equal(first, kept)
    assert reloaded.input_shape == (1, 3, 33, 33)  # kept in the library
    for run in (compiled.run, reloaded):
        with pytest.raises(ValueError, match=r"compiled for inputs of shape \(1, 3, 33, 33\)"):
            run(image(35))
    whole = open(library, "rb").read()
    cut = tmp_path / "cut.so"  # copies cut short, as by a full disk (loaded: a bus error)
    for end in (4096, len(whole) // 2, len(whole) - 1):
        cut.write_bytes(whole[:end])
        with pytest.raises(ValueError, match=f"{cut} is cut short"):
            load_library(str(cut))
    # a library recording a CPU this LLVM does not know (a newer LLVM's; here the name is
    # overwritten) runs: the extensions it lists are checked, not its CPU's name; made
    # before libraries listed them (here the function renamed), it cannot be checked, so
    # it is refused
    host = host_cpu().encode()
    assert whole.count(host) == 1 and whole.count(b"extensions") == 1
    unknown = whole.replace(host, b"q" * len(host))
    (tmp_path / "unknown.so").write_bytes(unknown)
    np.testing.assert_array_equal(load_library(str(tmp_path / "unknown.so"))(x), compiled.run(x))
    (tmp_path / "older.so").write_bytes(unknown.replace(b"extensions", b"extensionz"))
    with pytest.raises(ValueError, match=f"older.so: compiled for the CPU {'q' * len(host)}, "
                                         "which this TVM's LLVM does not know"):
        load_library(str(tmp_path / "older.so"))
    (tmp_path / "text.so").write_text("not a library")
    with pytest.raises(ValueError, match="text.so is not a library written by"):
        load_library(str(tmp_path / "text.so"))
    with pytest.raises(ValueError, match="no compiled library at .*missing.so"):
        load_library(str(tmp_path / "missing.so"))


TRANSPARENT_HUGE_PAGES = "/sys/kernel/mm/transparent_hugepage/enabled"

HUGE_PAGES = """
import sys, numpy as np, tvm
from tvm import relax
from octconv.deploy import load_library
def huge_mb():
    with open("/proc/self/smaps_rollup") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("AnonHugePages")) >> 10
how, library = sys.argv[1:]
x = np.ones((1, 3, 16, 16), np.float32)
before = huge_mb()
if how == "load_library":
    np.save(library + ".npy", load_library(library)(x))
else:  # TVM's runtime alone, as a user's own code would load it; "call": and call it
    vm = relax.VirtualMachine(tvm.runtime.load_module(library), tvm.cpu())
    if how == "call":
        np.save(library + ".npy", vm["main"](tvm.runtime.tensor(x)).numpy())
print(huge_mb() - before)
"""


def huge_pages_mode():
    """Linux's transparent huge pages mode ('always', 'madvise'); the test skipped where
    there are none."""
    try:
        with open(TRANSPARENT_HUGE_PAGES) as f:
            mode = re.search(r"\[(\w+)\]", f.read()).group(1)
    except OSError:
        mode = None
    if mode in (None, "never"):
        pytest.skip(f"no transparent huge pages here (mode {mode})")
    return mode


def wide_network():
    """A network whose weights are nearly all one 1x1 convolution's 16 MB."""
    x = mx.sym.Convolution(mx.sym.var("data"), kernel=(3, 3), stride=(2, 2), pad=(1, 1),
                           num_filter=1024, no_bias=True, name="stem")
    x = mx.sym.Convolution(mx.sym.Activation(x, act_type="relu"), kernel=(1, 1),
                           num_filter=4096, no_bias=True, name="wide")
    return small_network(x, 0.03)


def test_a_library_keeps_its_weights_in_huge_pages_however_it_is_loaded(tmp_path, cache):
    """A library's weights (here a 1x1 convolution's 16 MB) are in huge pages after its
    first call, whether TVM's runtime alone loads and calls it or ``load_library``
    loads it (which makes that call). Loaded and not called, they are not, in Linux's
    'madvise' mode, which gives huge pages only where asked: the advice is the
    library's own. Each load runs in a fresh process, where every page of huge pages it
    adds is the load's; the logits are the library's."""
    mode = huge_pages_mode()
    network = wide_network()
    compiled = compile_symbol(network.symbol, network.params, (1, 3, 16, 16), cache=cache,
                              budget=1)
    library = compiled.export(str(tmp_path / "net.so"))
    ones = np.ones((1, 3, 16, 16), np.float32)
    gained = {}
    for how in ("load", "call", "load_library") if mode == "madvise" else ("call", "load_library"):
        printed = subprocess.run([sys.executable, "-c", HUGE_PAGES, how, library],
                                 check=True, cwd=ROOT, capture_output=True, text=True).stdout
        gained[how] = int(printed.split()[-1])
        if how != "load":
            np.testing.assert_array_equal(np.load(library + ".npy"), compiled.run(ones))
    assert gained["call"] >= 8 and gained["load_library"] >= 8, gained
    assert gained.get("load", 0) < 2, gained


def test_spans_of_arrays_are_merged_into_whole_pages(tmp_path):
    """``hugepages.c``'s ``octconv_merge_spans`` against the same memory taken page by
    page: every page an array touches is in a span, and a span's pages are those of
    arrays or gaps of fewer than ``gap`` bytes between them; empty arrays take none."""
    merge = ctypes.CDLL(hugepages.advice_object(str(tmp_path), visible=True)).octconv_merge_spans
    merge.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
    merge.restype = ctypes.c_int64
    rng = np.random.default_rng(0)
    page = 4096
    for _ in range(200):
        starts = rng.integers(page, 64 * page, rng.integers(1, 8))
        spans = [(int(s), int(s + rng.integers(0, 6 * page))) for s in starts]
        gap = int(rng.choice([1, page, 3 * page]))
        memory = np.array(spans, np.uint64)
        merged = [tuple(int(v) for v in span)
                  for span in memory[:merge(memory.ctypes.data, len(spans), gap)]]
        touched = sorted({p for s, e in spans for p in range(s // page, (e - 1) // page + 1)
                          if e > s})
        expected = [[touched[0], touched[0] + 1]] if touched else []
        for p in touched[1:]:
            if (p - expected[-1][1]) * page < gap:
                expected[-1][1] = p + 1
            else:
                expected.append([p, p + 1])
        assert merged == [(a * page, b * page) for a, b in expected]


@pytest.fixture(scope="module")
def cpp_runner(tmp_path_factory):
    """tools/cpp/run_library, built by its Makefile against this environment's TVM
    runtime: a function running it on its arguments."""
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    runner = tmp_path_factory.mktemp("cpp") / "run_library"
    subprocess.run(["make", "-C", os.path.join(ROOT, "tools", "cpp"), f"PYTHON={sys.executable}",
                    f"OUT={runner}"], check=True, capture_output=True)
    return lambda *args: subprocess.run([str(runner), *map(str, args)], capture_output=True,
                                        text=True)


def test_a_library_runs_from_cpp_with_tvms_runtime_alone(tmp_path, cache, cpp_runner):
    """tools/cpp/run_library gives the logits the library gives in Python, bit for bit,
    on 1 and 2 threads, and so MXNet's; files it cannot take are named, with exit
    status 2."""
    network = two_octave_layers()
    x = np.concatenate([image(16, seed) for seed in (1, 2)])
    compiled = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1)
    library = compiled.export(str(tmp_path / "net.so"))
    x.tofile(tmp_path / "x.f32")

    for threads in (1, 2):
        done = cpp_runner(library, tmp_path / "x.f32", tmp_path / "y.f32", "--threads", threads,
                          "--runs", 3)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == (f"{library}: input 2 x 3 x 16 x 16 float32, compiled for "
                            f"{host_cpu()}, {threads} thread(s)")
        assert lines[1].startswith("huge pages: ")  # (the test below)
        assert lines[2] == f"logits 2 x 10 float32 -> {tmp_path / 'y.f32'}"
        median, fastest, slowest = (float(v) for v in re.match(
            r"3 calls: median (\S+) ms \((\S+)-(\S+)\)", lines[3]).groups())
        assert 0 < fastest <= median <= slowest
        logits = np.fromfile(tmp_path / "y.f32", np.float32).reshape(2, 10)
        np.testing.assert_array_equal(logits, compiled.with_threads(threads).run(x))
        assert_close_to_mxnet(logits, mxnet_logits(network, x))
    assert [name for name in os.listdir(tmp_path) if ".tmp" in name] == []  # (written whole)

    x[:1].tofile(tmp_path / "one.f32")
    (tmp_path / "text.so").write_text("not a library")
    whole = open(library, "rb").read()
    (tmp_path / "cut.so").write_bytes(whole[:4096])  # loaded: SIGBUS
    listed = ",".join(extensions(make_target())).encode()  # its last name made unknown,
    assert whole.count(listed) == 1  # as a newer LLVM's would be
    (tmp_path / "newer_llvm.so").write_bytes(whole.replace(listed, listed[:-1] + b"q"))
    unknown = re.escape(listed[:-1].decode().rsplit(",", 1)[-1] + "q")
    for args, message in [
            ((tmp_path / "one.f32",), "one.f32 holds 3072 bytes; the library takes 2 x 3 x 16 x 16 "
                                      r"float32 values \(6144 bytes\)"),
            ((tmp_path / "x.f32", "--threads", "-1"), "--threads takes a whole number of at "
                                                      "least 0, got -1\nusage: run_library .*\n"
                                                      " +run_library --extensions"),
            ((tmp_path / "missing.f32",), "cannot read .*missing.f32")]:
        done = cpp_runner(library, *args[:1], tmp_path / "out.f32", *args[1:])
        assert done.returncode == 2 and re.fullmatch(f"error: (.*/)?{message}\n", done.stderr), \
            done.stderr
    for path, message in [("missing.so", "no compiled library at .*missing.so"),
                          ("text.so", "text.so is not a library of tools/tvm_compile.py"),
                          ("cut.so", "cut.so is cut short"),
                          ("newer_llvm.so", f"newer_llvm.so: compiled for the CPU {host_cpu()}, "
                                            f"whose {unknown} this program's table does not "
                                            "know")]:
        done = cpp_runner(tmp_path / path, tmp_path / "x.f32", tmp_path / "out.f32")
        assert done.returncode == 2 and re.match(f"error: (.*/)?{message}", done.stderr), \
            done.stderr
    assert not (tmp_path / "out.f32").exists()
    with pytest.raises(ValueError, match=f"newer_llvm.so: compiled for the CPU {host_cpu()}, "
                                         f"whose {unknown} this CPU"):  # (LLVM's neither)
        load_library(str(tmp_path / "newer_llvm.so"))


def test_the_cpp_runner_keeps_the_weights_in_huge_pages(tmp_path, cache, cpp_runner):
    """A library run by tools/cpp/run_library advises its weights into huge pages as in
    Python: the runner's process (a fresh one, so its huge pages are the library's)
    holds at least half of the 16 MB of weights in them after the first call, which in
    Linux's 'madvise' mode only the advice gives (loaded, not called: less than 2 MB,
    the test above), and its logits are the library's."""
    huge_pages_mode()
    network = wide_network()
    compiled = compile_symbol(network.symbol, network.params, (1, 3, 16, 16), cache=cache,
                              budget=1)
    library = compiled.export(str(tmp_path / "net.so"))
    x = image(16)
    x.tofile(tmp_path / "x.f32")
    done = cpp_runner(library, tmp_path / "x.f32", tmp_path / "y.f32")
    assert done.returncode == 0, done.stderr
    held = int(re.fullmatch(r"huge pages: the process has (\d+) MB in them",
                            done.stdout.splitlines()[1]).group(1))
    assert held >= 8, done.stdout
    np.testing.assert_array_equal(np.fromfile(tmp_path / "y.f32", np.float32).reshape(1, -1),
                                  compiled.run(x))


def test_the_cpp_runner_reads_this_cpus_extensions_as_linux_lists_them(cpp_runner):
    """``run_library --extensions``, from CPUID and XGETBV, against /proc/cpuinfo; it
    knows every extension that a library compiled for any CPU LLVM knows may list, and
    has every one of the host target's (LLVM's CPU model less what Linux withholds)."""
    done = cpp_runner("--extensions")
    assert done.returncode == 0, done.stderr
    has, lacks = (part.split(", ") for part in
                  re.fullmatch(r"has: (.*)\nlacks: (.*)\n", done.stdout).groups())
    every = set().union(*(extensions(make_target(cpu)) for cpu in
                          codegen.llvm_get_cpu_archlist(make_target())))
    assert every <= set(has) | set(lacks) and not set(has) & set(lacks)
    flags = cpuinfo_flags()
    assert ({name for name in has if name in LINUX_FLAGS} ==
            {name for name, flag in LINUX_FLAGS.items() if flag in flags})
    assert set(extensions(make_target())) <= set(has)


def test_the_host_target_leaves_out_the_extensions_the_os_withholds(monkeypatch):
    """A virtual machine may withhold AVX2 or AVX-512 from a CPU model that has them
    (here Linux's flags are read without them): the host target then uses none of them,
    and code for the CPU model, which would die of an illegal instruction, is not run."""
    model = make_target(host_cpu())
    if "avx2" not in extensions(model):
        pytest.skip("this CPU model has no AVX2 to withhold")
    cpuinfo = targets._cpuinfo
    monkeypatch.setattr(targets, "_cpuinfo", lambda key: " ".join(
        flag for flag in cpuinfo(key).split() if not flag.startswith(("avx2", "avx512")))
        if key == "flags" else cpuinfo(key))
    host = make_target()
    assert not [name for name in extensions(host) if name.startswith(("avx2", "avx512"))]
    assert "avx" in extensions(host) and vector_lanes(host) == 8
    assert "-avx2" in describe(host)  # (the tuning cache's key)
    assert lacking(["avx", "avx2"]) == ["avx2"] and not runs_here(model)


def test_extensions_linux_lists_count_though_the_cpu_model_lacks_them(monkeypatch):
    """A CPU newer than the model LLVM names it by has extensions the model lacks (here
    Linux's flags are read with AMX's): a library that needs them is not refused."""
    if "amx-tile" in extensions(make_target()):
        pytest.skip("this CPU model has AMX")
    cpuinfo = targets._cpuinfo
    without_amx = lambda flags: " ".join(f for f in flags.split() if not f.startswith("amx"))
    monkeypatch.setattr(targets, "_cpuinfo", lambda key: without_amx(cpuinfo(key)) +
                        " amx_tile amx_int8" if key == "flags" else cpuinfo(key))
    assert lacking(["amx-tile", "amx-int8", "amx-bf16"]) == ["amx-bf16"]
    assert "amx-tile" not in extensions(make_target())  # (the host target's code as before)


def test_the_cpu_named_in_results_tells_cpus_of_one_name_apart(monkeypatch):
    """Results name this machine's CPU with the numbers /proc/cpuinfo gives for it and
    LLVM's name of it, so two CPUs a virtual machine names alike ('AMD EPYC' for a Zen 4
    and a Zen 5) read differently; a machine whose OS gives no numbers keeps the rest."""
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    if not {"model name", "cpu family", "model"} <= set(fields):
        pytest.skip("/proc/cpuinfo gives no CPU name and numbers here")
    assert targets.cpu_model() == (f"{fields['model name']} (family {fields['cpu family']}, "
                                   f"model {fields['model']}; LLVM {host_cpu()})")
    monkeypatch.setattr(targets, "_cpuinfo", lambda key: {"model name": "Some CPU"}.get(key))
    assert targets.cpu_model() == f"Some CPU (LLVM {host_cpu()})"


def test_caches_are_written_then_reused_and_corrupt_ones_are_ignored(tmp_path):
    """Tile records and compiled libraries: a second compile searches nothing and builds
    nothing (the library file is loaded as is); unreadable ones warn and are rebuilt."""
    if not runs_here(make_target()):
        pytest.skip("host target not runnable")
    path = str(tmp_path / "tiles.json")
    network = two_octave_layers()
    x = image(16)
    first = compile_symbol(network.symbol, network.params, x.shape, cache=TileCache(path),
                           budget=2)
    assert first.stats["searches"] > 0 and first.stats["library"] == "built"
    records = json.load(open(path))
    (target_records,) = records.values()
    # a tile per search (the layers have too few channels for a choice of 3x3 algorithm)
    assert len(target_records) == first.stats["searches"]
    assert TileCache(path).usable(make_target()) == first.stats["searches"]
    older = TileCache(path)  # records of an older schedule version are not usable
    older.put(make_target(), "v1 Conv(...)", [1, 1, 1, 1], 1.0)
    assert older.usable(make_target()) == first.stats["searches"]
    (library,) = (tmp_path / "libraries").glob("*.so")
    built_at = library.stat().st_mtime_ns
    second = compile_symbol(network.symbol, network.params, x.shape, cache=TileCache(path),
                            budget=2)
    assert second.stats["searches"] == 0 and second.stats["library"] == "cached"
    assert library.stat().st_mtime_ns == built_at
    np.testing.assert_array_equal(second.run(x), first.run(x))

    broken = tmp_path / "broken.so"  # replaced, not truncated: this process maps the file
    broken.write_bytes(library.read_bytes()[:1000])
    os.replace(broken, library)
    with pytest.warns(RuntimeWarning, match="unreadable compiled library"):
        third = compile_symbol(network.symbol, network.params, x.shape, cache=TileCache(path),
                               budget=2)
    assert third.stats["library"] == "built" and library.stat().st_size > 1000
    np.testing.assert_array_equal(third.run(x), first.run(x))

    with open(path, "w") as f:
        f.write('{"llvm -mcpu=x": {"tru')  # a run killed mid-write
    with pytest.warns(RuntimeWarning, match="unreadable TVM tuning cache"):
        cache = TileCache(path)
    fourth = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=2)
    assert fourth.stats["searches"] == first.stats["searches"]
    assert_close_to_mxnet(fourth.run(x), mxnet_logits(network, x))
    assert json.load(open(path))  # rewritten, readable


SAVE_RECORDS = """
import sys, time
from octconv.deploy.target import make_target
from octconv.deploy.tuning import TileCache
path, name, start = sys.argv[1:]
target = make_target("haswell")
time.sleep(max(0.0, float(start) - time.time()))  # both processes save at once
for j in range(60):  # each save between another process's read and write would lose it
    cache = TileCache(path)
    cache.put(target, f"{name} {j}", [j], 1.0)
    cache.save()
"""


def test_tile_caches_saved_side_by_side_keep_each_others_records(tmp_path):
    """Two caches opened on one file, each with a search the other has not seen, both
    saved: the file holds both records (the second save merges, where the records
    read at opening would overwrite), and a record saved by one after the other read
    the file is not overwritten by that reader's old copy; likewise two processes
    saving record after record at the same time (the merge under a lock)."""
    path, target = str(tmp_path / "tiles.json"), make_target("haswell")
    first, second = TileCache(path), TileCache(path)
    first.put(target, "first", [1, 2], 0.5)
    second.put(target, "second", [3, 4], 0.7)
    first.save()
    second.save()
    again = TileCache(path)
    assert again.get(target, "first") == (1, 2) and again.get(target, "second") == (3, 4)
    newer = TileCache(path)  # a record searched again elsewhere after `again` read it
    newer.put(target, "first", [5, 6], 0.4)
    newer.save()
    again.put(target, "third", [7, 8], 0.1)
    again.save()  # writes its own record, not its old copy of the other's
    assert TileCache(path).get(target, "first") == (5, 6)
    assert TileCache(path).get(target, "third") == (7, 8)

    shared = str(tmp_path / "shared.json")
    start = str(time.time() + 4)  # once both have imported TVM
    writers = [subprocess.Popen([sys.executable, "-c", SAVE_RECORDS, shared, name, start],
                                cwd=ROOT) for name in ("a", "b")]
    assert [w.wait() for w in writers] == [0, 0]
    records = json.load(open(shared))["llvm -mcpu=haswell"]
    assert sorted(records) == sorted(f"{n} {j}" for n in "ab" for j in range(60))


def test_onnx_exports_are_kept_reused_and_exported_again_when_corrupt(tmp_path):
    """The ONNX file that ONNX Runtime and OpenVINO read is exported once for a graph,
    its weights and an input shape, beside the tile cache, and reused; other weights or
    another batch get their own file; a file that fails its checksum (a run killed
    while writing it) is exported again. The file computes the network's logits."""
    import onnxruntime as ort
    cache = TileCache(str(tmp_path / "tiles.json"))
    network = two_octave_layers()
    path = onnx_file(network, (1, 3, 16, 16), cache)
    assert os.path.dirname(path) == str(tmp_path / "onnx")
    written = os.stat(path).st_mtime_ns
    assert onnx_file(network, (1, 3, 16, 16), cache) == path
    assert os.stat(path).st_mtime_ns == written
    assert onnx_file(network, (2, 3, 16, 16), cache) != path
    other = SimpleNamespace(symbol=network.symbol,
                            params={k: v * 2 for k, v in network.params.items()})
    assert onnx_file(other, (1, 3, 16, 16), cache) != path
    with open(path, "r+b") as f:
        f.truncate(100)
    with pytest.warns(RuntimeWarning, match="unreadable ONNX export"):
        assert onnx_file(network, (1, 3, 16, 16), cache) == path
    assert os.path.getsize(path) > 100
    x = image(16)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x})
    assert_close_to_mxnet(out, mxnet_logits(network, x))


def test_weight_bound_workloads_are_timed_with_their_weights_out_of_cache(tmp_path,
                                                                          monkeypatch):
    """A tile search times a layer whose weights outweigh an image of its input (a 7 px
    1x1 convolution, 64 -> 64 channels: 16 K weights against a 3 K input) with its
    weights flushed before each call, as inside a network, and a layer with more input
    than weights (28 px) called again and again in cache."""
    target = make_target()
    if not runs_here(target):
        pytest.skip("host target not runnable")
    timed = []
    for name in ("time_cold", "time_function"):
        original = getattr(tuning, name)
        monkeypatch.setattr(tuning, name, lambda *args, _f=original, _n=name, **kw: (
            timed.append(_n), _f(*args, **kw))[1])
    deep = K.Conv((1, 4, 7, 7, 16), 4, 16, 4, 1, 1, 1, 0, BIAS)
    wide = K.Conv((1, 4, 28, 28, 16), 4, 16, 4, 1, 1, 1, 0, BIAS)
    assert K.weight_bound(deep) and not K.weight_bound(wide)
    lanes = vector_lanes(target)
    for kernel, kind in ((deep, "time_cold"), (wide, "time_function")):
        timed.clear()
        choose_tile(kernel, target, lanes, TileCache(str(tmp_path / f"{kind}.json")), 2)
        assert timed == [kind, kind], (kernel, timed)


def test_records_and_libraries_are_kept_under_a_digest_of_the_kernel_code(tmp_path):
    """The schedule version is a digest of the kernel code: it is the digest of the
    installed files, and an edit of any of them gives another one, so records and
    libraries made by other code are not reused."""
    folder = os.path.dirname(tuning.__file__)
    assert tuning.schedule_digest(folder) == tuning.SCHEDULE_VERSION
    for name in tuning.SCHEDULE_SOURCES:
        for other in tuning.SCHEDULE_SOURCES:
            shutil.copy(os.path.join(folder, other), tmp_path / other)
        with open(tmp_path / name, "a") as f:
            f.write("\n# edited\n")
        assert tuning.schedule_digest(str(tmp_path)) != tuning.SCHEDULE_VERSION, name


def test_parallel_search_runs_the_searches_a_one_by_one_search_runs(tmp_path, monkeypatch):
    """``search_tiles`` (builds in 2 processes) records one of the candidates for
    exactly the workloads ``choose_tile`` searches one by one (and returns, for each, the
    library of its candidates and the recorded tile's function in it), after which
    ``choose_tile`` searches nothing; a failed build process warns and records nothing
    (``choose_tile`` then searches). With one job it builds in this process (no build
    process is started: it works while they would fail) and returns the same."""
    target = make_target()
    if not runs_here(target):
        pytest.skip("host target not runnable")
    lanes = vector_lanes(target)
    network = network_("resnet10_v2_mini", 0.125, 32)
    kernels = lower(network.symbol.tojson(), network.params, (1, 3, 32, 32), lanes).kernels()
    one_by_one = TileCache(str(tmp_path / "serial.json"))
    for kernel in kernels:
        choose_tile(kernel, target, lanes, one_by_one, 2)
    parallel = TileCache(str(tmp_path / "parallel.json"))
    searched = search_tiles(kernels, target, lanes, parallel, budget=2, jobs=2)
    assert parallel.searches == one_by_one.searches > 1
    assert len(searched) == parallel.searches  # each with the function of its record:
    for kernel in kernels:
        if tuning_workload(kernel, lanes).key() in searched:
            module, name = searched[tuning_workload(kernel, lanes).key()]
            assert module.implements_function(name)
            assert kernel.tiles(lanes)[int(name[len("tile"):])] == \
                choose_tile(kernel, target, lanes, parallel, 2)
    assert parallel.records.keys() == one_by_one.records.keys()
    (records,), (serial_records,) = parallel.records.values(), one_by_one.records.values()
    assert records.keys() == serial_records.keys()
    for kernel in kernels:
        assert choose_tile(kernel, target, lanes, parallel, 2) in kernel.tiles(lanes)[:2]
    assert parallel.searches == one_by_one.searches

    builders.close()
    monkeypatch.setattr(sys, "executable", "/bin/false")  # every build process fails
    failed = TileCache(str(tmp_path / "failed.json"))
    with pytest.warns(RuntimeWarning, match="kernel build process failed"):
        search_tiles(kernels, target, lanes, failed, budget=2, jobs=2)
    assert failed.searches == 0 and not failed.records
    alone = TileCache(str(tmp_path / "alone.json"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a build process asked for would warn
        searched_alone = search_tiles(kernels, target, lanes, alone, budget=2, jobs=1)
    assert alone.searches == one_by_one.searches and searched_alone.keys() == searched.keys()
    assert all(module.implements_function(name) for module, name in searched_alone.values())
    monkeypatch.undo()  # the failed processes are replaced at the next use
    search_tiles(kernels, target, lanes, failed, budget=2, jobs=2)
    assert failed.searches == one_by_one.searches


def test_build_processes_are_started_once_and_replaced_when_they_fail(tmp_path, monkeypatch):
    """Work is dealt into one part per core, every item once; the build processes serve
    one batch of tasks after another (no new Python each time), importing from the
    module path of the moment; a failed task fails its batch and the processes are
    replaced."""
    def pids():
        paths = [str(tmp_path / f"pid{j}") for j in range(2)]
        assert builders.run([("helpers", "write_pid", (path,)) for path in paths], 2)
        return [int(open(path).read()) for path in paths]

    items = list(range(5))
    dealt = builders.parts(items)
    assert len(dealt) == min(len(os.sched_getaffinity(0)), 5)
    assert sorted(sum(dealt, [])) == items and all(dealt)
    first = pids()
    assert len(set(first)) == 2 and os.getpid() not in first
    assert pids() == first
    late = tmp_path / "late"  # a module path added after the processes started
    late.mkdir()
    (late / "late_task.py").write_text("def write(path):\n    open(path, 'w').write('late')\n")
    monkeypatch.syspath_prepend(str(late))
    assert builders.run([("late_task", "write", (str(tmp_path / "late.txt"),))])
    assert (tmp_path / "late.txt").read_text() == "late" and pids() == first
    assert not builders.run([("helpers", "write_pid", (str(tmp_path / "no" / "pid"),))])
    assert not set(pids()) & set(first)


def test_build_processes_build_for_the_target_as_given(tmp_path):
    """The build processes compile for the caller's target itself, its attributes
    included, not for one remade from its CPU name: the host's code has fused
    multiply-adds, the same CPU with FMA switched off has none."""
    host = make_target()
    network = network_("resnet10_v2_mini", 0.125, 32)
    conv = next(k for k in lower(network.symbol.tojson(), network.params, (1, 3, 32, 32),
                                 vector_lanes(host)).kernels() if isinstance(k, K.Conv))
    for name, target in (("host", host),
                         ("no_fma", tvm.target.Target({"kind": "llvm", "num-cores": 1,
                                                       "mcpu": host.attrs["mcpu"],
                                                       "mattr": ["-fma"]}))):
        folder = tmp_path / name
        folder.mkdir()
        functions = {"k": (conv, conv.tiles(vector_lanes(target))[0])}
        (path,) = tuning.build_in_processes([functions], target, str(folder))
        code = subprocess.run(["objdump", "-d", path], capture_output=True, text=True,
                              check=True).stdout
        assert ("vfmadd" in code) == (name == "host"), name


def test_a_library_is_built_here_when_its_build_process_fails(tmp_path, monkeypatch):
    """A network's kernels are built in build processes and linked into its library;
    when those processes fail, every kernel is built in this process (a warning), into
    a library computing the same logits."""
    network = two_octave_layers()
    x = image(16)
    cache = TileCache(str(tmp_path / "tiles.json"))
    linked = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1)
    builders.close()
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.warns(RuntimeWarning, match="library build process failed; building every "
                                            "kernel here"):
        here = compile_symbol(network.symbol, network.params, x.shape, cache=cache, budget=1,
                              libraries=LibraryCache(str(tmp_path / "here")))
    assert here.stats["library"] == "built"
    np.testing.assert_array_equal(here.run(x), linked.run(x))
    want = mxnet_logits(network, x)
    np.testing.assert_allclose(here.run(x), want, rtol=0, atol=1e-4 * np.abs(want).max())


UNGUARDED_SCRIPT = """
import sys
from octconv.deploy import TileCache, compile_symbol
from octconv.deploy.bench import zoo_network
network = zoo_network("resnet10_v2_mini", 0.125, classes=10, size=32)
compiled = compile_symbol(network.symbol, network.params, (1, 3, 32, 32),
                          cache=TileCache(sys.argv[1]), budget=2)
print("searched", compiled.stats["searches"])
"""


def test_a_script_without_a_main_guard_runs_once_while_its_tiles_are_built_in_processes(
        tmp_path):
    """The build processes of a parallel search do not run the caller's script again
    (as multiprocessing's spawn would)."""
    if not runs_here(make_target()):
        pytest.skip("host target not runnable")
    script = tmp_path / "user_script.py"
    script.write_text(UNGUARDED_SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "tiles.json")],
                         check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    (line,) = [line for line in out.splitlines() if line.startswith("searched")]
    assert int(line.split()[1]) > 1


def test_other_weights_and_bad_shapes_are_refused(cache):
    """Weights of another alpha, one wrong shape, a batch of 0, another channel count:
    a ValueError naming the problem, before anything is built."""
    wrong_alpha = zoo_network("resnet10_v2_mini", 0.5, classes=10, size=32).params
    with pytest.raises(ValueError, match=r"parameter '\S+' has shape \(\d+, .* the graph "
                                         r"needs \(\d+, "):
        compile_network("resnet10_v2_mini", 0.25, classes=10, params=wrong_alpha, size=32,
                        cache=cache)
    network = two_octave_layers()
    params = dict(network.params, fc_bias=np.zeros(11, np.float32))
    with pytest.raises(ValueError, match=r"parameter 'fc_bias' has shape \(11,\) but the "
                                         r"graph needs \(10,\)"):
        compile_symbol(network.symbol, params, (1, 3, 16, 16), cache=cache, budget=1)
    with pytest.raises(ValueError, match=r"at least 1 .batch included.*got \(0, 3, 16, 16\)"):
        compile_symbol(network.symbol, network.params, (0, 3, 16, 16), cache=cache)
    with pytest.raises(ValueError, match=r"a: input has \(high, low\) channels \(4, 0\), "
                                         r"declared \(3, 0\)"):  # the first layer's check
        compile_symbol(network.symbol, network.params, (1, 4, 16, 16), cache=cache)
    compiled = compile_symbol(network.symbol, network.params, (2, 3, 16, 16), cache=cache,
                              budget=1)
    with pytest.raises(ValueError, match=r"compiled for inputs of shape \(2, 3, 16, 16\)"):
        compiled.run(image(16))


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


def cpuinfo_flags():
    """This machine's extensions as Linux lists them (/proc/cpuinfo's first flags line)."""
    with open("/proc/cpuinfo") as f:
        return next(line for line in f if line.startswith("flags")).split(":")[1].split()


@pytest.fixture(scope="module")
def newer_library(tmp_path_factory):
    """A small network compiled for the newest CPU named here with vector or matrix
    extensions this one lacks, as Linux lists them (an Intel Xeon with AMX has every
    extension of Sapphire Rapids, but not Zen 5's avx512vp2intersect): (its LLVM name,
    the compiled network, its library)."""
    newer = next((cpu for cpu in ("sapphirerapids", "graniterapids", "znver5", "znver4")
                  if any(name.startswith(("avx", "amx")) for name in _lacked(cpu))), None)
    if newer is None:
        pytest.skip("this CPU has every extension of the newest CPUs named here")
    folder = tmp_path_factory.mktemp("newer")
    network = network_("resnet10_v2_mini", 0.125, 35)
    compiled = compile_symbol(network.symbol, network.params, (1, 3, 35, 35), newer,
                              TileCache(str(folder / "tiles.json")), 1)
    return newer, compiled, compiled.export(str(folder / "newer.so"))


def _lacked(cpu):
    """The extensions of the CPU ``cpu`` (as LLVM gives them) that /proc/cpuinfo does not
    list, sorted."""
    flags = cpuinfo_flags()
    return [name for name in sorted(codegen.llvm_get_cpu_features(make_target(cpu)))
            if name in LINUX_FLAGS and LINUX_FLAGS[name] not in flags]


def lacked_extensions(cpu):
    """:func:`_lacked` as a refusal names them."""
    lacked = _lacked(cpu)
    assert lacked
    return ", ".join(lacked)


def test_a_library_for_a_cpu_with_instructions_this_one_lacks_is_refused(newer_library):
    """Run, such a library would die of an illegal instruction; compiled and reloaded,
    it is refused with the CPU and the extensions this one lacks named."""
    newer, compiled, library = newer_library
    lacked = lacked_extensions(newer)
    with pytest.raises(ValueError, match=f"compiled for the CPU {newer}, whose {lacked} this"):
        compiled.run(image(35))
    with pytest.raises(ValueError, match=f"newer.so: compiled for the CPU {newer}, whose "
                                         f"{lacked} this CPU"):
        load_library(library)


def test_the_cpp_runner_refuses_a_library_for_a_cpu_with_instructions_this_one_lacks(
        newer_library, cpp_runner, tmp_path):
    """It reads this CPU's extensions itself (no LLVM), and names those it lacks."""
    newer, _, library = newer_library
    image(35).tofile(tmp_path / "x.f32")
    done = cpp_runner(library, tmp_path / "x.f32", tmp_path / "y.f32")
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"error: {library}: compiled for the CPU {newer}, whose "
                           f"{lacked_extensions(newer)} this CPU lacks; compile for this CPU "
                           "(the default) or name the oldest CPU it must run on "
                           "(tools/tvm_compile.py --target)\n")
    assert not (tmp_path / "y.f32").exists()


def test_unknown_target_and_unsupported_operator_are_named():
    with pytest.raises(ValueError, match="unknown CPU 'pentium9000'"):
        make_target("pentium9000")
    with pytest.raises(ValueError, match="i3d_resnet10_mini is a video network; the TVM path "
                                         "compiles image networks"):  # (2-D kernels only)
        compile_network("i3d_resnet10_mini", 0.25, size=32)
    from octconv.export import logits_symbol  # its Symbol given with a clip's shape
    with pytest.raises(ValueError, match=r"compiles image networks, whose input is \(batch, "
                                         r"channels, height, width\); got \(1, 3, 4, 32, 32\)"):
        compile_symbol(logits_symbol("i3d_resnet10_mini", 0.25, 10), {}, (1, 3, 4, 32, 32))
    data = mx.sym.var("data")
    sym = mx.sym.FullyConnected(mx.sym.Flatten(mx.sym.Pooling(
        mx.sym.LeakyReLU(data, act_type="elu", name="odd"), global_pool=True, kernel=(1, 1),
        pool_type="avg")), num_hidden=2, name="fc")
    params = {"fc_weight": np.ones((2, 3), np.float32), "fc_bias": np.zeros(2, np.float32)}
    with pytest.raises(UnsupportedGraph, match="odd: operator LeakyReLU"):
        compile_symbol(sym, params, (1, 3, 8, 8), budget=1)
    dilated = small_network(mx.sym.Convolution(data, num_filter=8, kernel=(3, 3), pad=(2, 2),
                                                dilate=(2, 2), name="wide"), 0.2)
    with pytest.raises(UnsupportedGraph, match="wide: dilated convolution"):
        lower(dilated.symbol.tojson(), dilated.params, (1, 3, 16, 16), 16)


def test_compile_cli_times_first_calls_after_an_idle_wait_on_request(trained_run, tmp_path):
    """``--after-idle``: the timing says it timed each backend's first call after the
    wait, in its output and its JSON (the default, calls back to back, is checked in
    the next test)."""
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "tvm_compile.py"), "--checkpoint",
         trained_run, "--size", "32", "--time", "--runs", "2", "--budget", "1", "--cache",
         str(tmp_path / "tiles.json"), "--json", str(tmp_path / "r.json"), "--after-idle"],
        check=True, capture_output=True, text=True, cwd=ROOT)
    assert "1 thread(s), batch 1, 2 interleaved runs, each timed call the first of its " \
        "backend after the previous backend's workers went idle (--after-idle)" in run.stdout
    report = json.load(open(tmp_path / "r.json"))
    assert report["steady"] is False
    assert {b: t["runs"] for b, t in report["timing"].items()} == {
        "tvm": 2, "mxnet": 2, "onnxruntime": 2, "openvino": 2}


def test_compile_cli_takes_unequal_sides_for_every_backend(tmp_path):
    """``--size HEIGHTxWIDTH``: the library takes inputs of those sides at the batch
    asked, and every backend timed runs them (ONNX Runtime and OpenVINO from an export
    of those sides), each equal to MXNet within 1e-4 of its output scale."""
    library, report = tmp_path / "m.so", tmp_path / "r.json"
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "tvm_compile.py"), "--model",
         "resnet10_v2_mini", "--alpha", "0.25", "--classes", "10", "--size", "33x45",
         "--batch", "2", "--budget", "1", "--time", "--runs", "2", "--cache",
         str(tmp_path / "tiles.json"), "--out", str(library), "--json", str(report)],
        check=True, capture_output=True, text=True, cwd=ROOT)
    result = json.load(open(report))
    assert result["input_shape"] == [2, 3, 33, 45]
    assert " per image of 33x45 px, " in out.stdout.splitlines()[0]  # as the count tool
    assert sorted(result["timing"]) == ["mxnet", "onnxruntime", "openvino", "tvm"]
    assert all(result["timing"][b]["max_diff"] <= 1e-4
               for b in ("onnxruntime", "openvino", "tvm"))
    run = load_library(str(library))
    assert run.input_shape == (2, 3, 33, 45)
    network = zoo_network("resnet10_v2_mini", 0.25, classes=10)  # the tool's random weights
    x = np.random.default_rng(3).standard_normal((2, 3, 33, 45)).astype(np.float32)
    assert_close_to_mxnet(run(x), mxnet_logits(network, x))


def test_compile_cli_times_the_trained_demo_network(trained_run, tmp_path):
    """All four backends on 2 threads and a batch of 2, each timed call after 40 ms of
    untimed ones of its backend, each checked against MXNet and compared with TVM (a
    ratio and its interval); the kernel profile; the library serving 2 request threads
    at once (every output checked); all of it in the JSON file too."""
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "tvm_compile.py"), "--checkpoint",
         trained_run, "--size", "32", "--time", "--runs", "3", "--budget", "1", "--threads",
         "2", "--batch", "2", "--out", str(tmp_path / "demo.so"), "--cache",
         str(tmp_path / "tiles.json"), "--profile", "4", "--json", str(tmp_path / "r.json"),
         "--requests", "2"],
        check=True, capture_output=True, text=True, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "MXNET_SUBGRAPH_VERBOSE"})
    out = run.stdout
    assert "2 thread(s), batch 2, 3 interleaved runs, each timed call right after 40 ms of " \
        "untimed calls of its backend" in out
    assert "Subgraph backend" not in run.stderr  # MXNet's notice at each bind, off
    lines = out.splitlines()
    start = next(j for j, line in enumerate(lines) if line.startswith("kernels of one call"))
    rows, total = lines[start + 2:start + 6], lines[start + 6]  # after the column header
    assert lines[start + 1].split()[-9:] == ["weight", "MB", "alone", "ms", "cold", "ms", "1",
                                             "thread", "scaling"]
    assert all(float(row.split()[2]) > 0 and float(row.split()[-4]) > 0
               and float(row.split()[-3]) > 0 for row in rows)  # alone, in cache and not
    assert total.split()[0] == "total" and float(total.split()[-4]) > 0  # kernels alone
    for backend in ("tvm", "onnxruntime", "openvino"):
        line = next(line for line in out.splitlines() if line.startswith(f"  {backend} "))
        diff, unit = line.split("max |diff| vs MXNet")[1].split(maxsplit=1)
        assert float(diff) < 1e-4 and unit == "x max |out|", line  # of the output scale
    for backend in ("mxnet", "onnxruntime", "openvino"):  # TVM's time over theirs
        line = next(line for line in out.splitlines() if line.startswith(f"  {backend} "))
        ratio, low, high = (float(v) for v in re.search(
            r"TVM / it (\S+) \[(\S+)-(\S+)\]", line).groups())
        assert ratio > 0 and 0 < low <= high, line
    assert os.path.getsize(tmp_path / "demo.so") > 0
    report = json.load(open(tmp_path / "r.json"))
    assert report["input_shape"] == [2, 3, 32, 32] and report["threads"] == 2
    assert report["steady"] is True
    assert lines[0].endswith(f" on {report['cpu']} with {report['isa']}")  # the machine
    name = report["cpu"].rsplit(" (", 1)[0]  # (then its numbers and LLVM's name of it)
    assert f": {name}\n" in open("/proc/cpuinfo").read() and report["cpu"].endswith(
        f"LLVM {host_cpu()})")
    assert set(report["isa"].split(", ")) <= set(cpuinfo_flags())
    assert report["library"] == str(tmp_path / "demo.so")
    assert [r["function"] for r in report["profile"][:4]] == [row.split()[0] for row in rows]
    for row, entry in zip(rows, report["profile"]):  # alone on 1 thread, then its scaling
        assert float(row.split()[-5]) == pytest.approx(entry["weight_bytes"] / 1e6, abs=6e-3)
        assert float(row.split()[-3]) == pytest.approx(entry["cold_ms"], abs=6e-4)
        one, scaling = (float(v) for v in row.split()[-2:])
        assert one == pytest.approx(entry["alone_1_thread_ms"], abs=6e-4)
        assert scaling == pytest.approx(entry["alone_1_thread_ms"] / entry["alone_ms"],
                                        abs=6e-3)
    timing = report["timing"]
    assert set(timing) == {"tvm", "mxnet", "onnxruntime", "openvino"}
    for backend, entry in timing.items():
        line = next(line for line in lines if line.startswith(f"  {backend} "))
        assert f"{entry['median']:9.3f} ms" in line and entry["runs"] == 3
        assert entry["images_per_s"] == pytest.approx(2e3 / entry["median"])
        if backend != "tvm":
            assert entry["tvm_over_it"] == pytest.approx(timing["tvm"]["median"]
                                                         / entry["median"])
            assert entry["interval"][0] <= entry["interval"][1]
        if backend != "mxnet":
            assert entry["max_diff"] < 1e-4
    # TVM's library and the machine's scaling check, each on one thread and on two in
    # the same 3 rounds
    scaling = report["scaling"]
    assert scaling["threads"] == 2
    # (TVM's 2-thread times are those of its row)
    assert np.median(scaling["tvm"]["times"]["many"]) == pytest.approx(timing["tvm"]["median"])
    for name in ("tvm", "check"):
        entry = scaling[name]
        one, two = entry["times"]["1"], entry["times"]["many"]
        assert len(one) == len(two) == 3
        assert entry["scaling"] == pytest.approx(np.median(one) / np.median(two))
        q1, q3 = np.percentile(two, [25, 75])
        assert entry["spread"] == pytest.approx((q3 - q1) / np.median(two))
        low, high = entry["interval"]
        assert [low, high] == pytest.approx(ratio_interval(one, two)) and 0 < low <= high
    text = {name: (f"{scaling[name]['scaling']:.2f} [{scaling[name]['interval'][0]:.2f}-"
                   f"{scaling[name]['interval'][1]:.2f}] (spread "
                   f"{100 * scaling[name]['spread']:.0f} % on 2 threads)")
            for name in ("tvm", "check")}
    # the data-passing check in the same rounds: passes reading the other thread's
    # writes over passes reading one's own
    passing = scaling["passing"]
    own, passed = passing["times"]["own"], passing["times"]["passed"]
    assert len(own) == len(passed) == 3
    assert passing["ratio"] == pytest.approx(np.median(passed) / np.median(own))
    assert passing["interval"] == pytest.approx(ratio_interval(passed, own))
    assert (f"  1 -> 2 threads in the same rounds: TVM {text['tvm']}; the machine's scaling "
            f"check (a compute-bound 3x3 convolution whose threads share no data) "
            f"{text['check']}; its data-passing check (2 threads): reading another core's "
            f"writes {passing['ratio']:.2f} [{passing['interval'][0]:.2f}-"
            f"{passing['interval'][1]:.2f}] x as long as one's own") in lines
    serving = report["serving"]
    start = lines.index("serving 2 request threads of 2 thread(s) each, batch 2, 3 interleaved "
                        "rounds (images/s: median, min-max; at once over one request thread, "
                        "and TVM's at once over the backend's, with 95 % intervals):")
    assert serving["requests"] == 2 and list(serving["backends"]) == ["tvm", "onnxruntime",
                                                                      "openvino"]
    for line, (backend, entry) in zip(lines[start + 1:start + 4], serving["backends"].items()):
        assert line.startswith(f"  {backend} ")
        assert entry["calls_per_request_thread"] >= 1  # (as many as take about 0.2 s)
        for key in ("one", "many"):
            rates = entry[key]
            assert rates["runs"] == 3 and 0 < rates["min"] <= rates["median"] <= rates["max"]
        assert f" at once {entry['many']['median']:8.1f} " in line
        assert entry["gain"] == pytest.approx(entry["many"]["median"] / entry["one"]["median"])
        low, high = entry["interval"]
        assert f"gain {entry['gain']:.3g} [{low:.3g}-{high:.3g}]" in line and 0 < low <= high
        assert entry["max_diff"] < 1e-4  # each backend's output is MXNet's
        if backend != "tvm":  # TVM's images/s at once over the backend's
            tvm = serving["backends"]["tvm"]["many"]["median"]
            assert entry["tvm_over_it"] == pytest.approx(tvm / entry["many"]["median"])
            low, high = entry["tvm_over_it_interval"]
            assert f"TVM / it {entry['tvm_over_it']:.3g} [{low:.3g}-{high:.3g}]" in line


def test_score_cli_scores_a_library_beside_its_checkpoint(trained_run, digits, tmp_path, cache):
    """The library compiled from a run scores what the run's MXNet network scores on the
    same images (in the same command), compiled for batches of 3 so that the last chunk
    of the 359 images is short of a whole batch; it takes its own size only, and a
    library of other weights is refused."""
    from octconv.checkpoint import trained_model
    network, params = trained_model(trained_run)
    network = zoo_network(params={k: v.asnumpy() for k, v in params.items()}, size=32,
                          **network)

    def library_of(network, name):  # compiled for batches of 3
        compiled = compile_symbol(network.symbol, network.params, (3, 3, 32, 32), cache=cache,
                                  budget=1)
        return compiled.export(str(tmp_path / name))

    library = library_of(network, "demo.so")
    val = os.path.join(digits, "val")
    out = run_script("score.py", trained_run, "--data", val, "--library", library, "--json",
                     str(tmp_path / "s.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    results = {r["backend"]: r for r in json.load(open(tmp_path / "s.json"))["results"]}
    count = sum(len(files) for _, _, files in os.walk(val))
    assert results["mxnet"]["images"] == results["tvm"]["images"] == count
    assert results["mxnet"]["top1"] > 0.5  # a trained network (chance: 0.1)
    for metric in ("top1", "top5"):
        assert results["tvm"][metric] == pytest.approx(results["mxnet"][metric], abs=1.5 / count)
    assert re.search(r"^ +tvm +32 ", out.stdout, re.M), out.stdout
    out = run_script("score.py", trained_run, "--data", val, "--library", library, "--sizes", "48")
    assert out.returncode == 2 and "takes 32 px images" in out.stderr
    # a library of the same network with other weights is not scored as the run's
    other = library_of(zoo_network("resnet10_v2_mini", 0.25, classes=10, size=32), "other.so")
    out = run_script("score.py", trained_run, "--data", val, "--library", other)
    assert out.returncode == 2 and "other.so does not compute the checkpoint's network: on " \
        "one input their logits differ by up to" in out.stderr, out.stderr
    seven = library_of(zoo_network("resnet10_v2_mini", 0.25, classes=7, size=32),  # classes
                       "seven.so")
    out = run_script("score.py", trained_run, "--data", val, "--library", seven)
    assert out.returncode == 2 and "its logits have the shape (3, 7), the network's (3, 10)" \
        in out.stderr, out.stderr


def test_compile_cli_names_a_bad_checkpoint_and_weights_of_another_alpha(tmp_path, capsys):
    tool = load_script("tools/tvm_compile.py")
    assert tool.main(["--checkpoint", str(tmp_path / "nothing")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    params = zoo_network("resnet10_v2_mini", 0.5, classes=10, size=32).params
    mx.nd.save(str(tmp_path / "a05.params"), {k: mx.nd.array(v) for k, v in params.items()})
    code = tool.main(["--model", "resnet10_v2_mini", "--alpha", "0.25", "--classes", "10",
                      "--params", str(tmp_path / "a05.params"), "--size", "32", "--cache",
                      str(tmp_path / "tiles.json")])
    assert_refused_weights(code, capsys.readouterr().err)


@pytest.mark.parametrize("name", ["mobilenet_v1_075_a0.375", "resnet50_v2_a0.5"])
def test_serving_results_come_from_the_compile_tool(name):
    """results/serving/*.json, which README cites, were written by ``tvm_compile.py
    --requests 2 --json`` for the network their name gives, on one thread per request
    thread, with the machine's CPU and vector extensions: for TVM, ONNX Runtime and
    OpenVINO the gain their medians imply and its interval, and TVM's images/s at once
    over the others'."""
    report = json.load(open(os.path.join(ROOT, "results", "serving", f"{name}.json")))
    model, alpha = name.rsplit("_a", 1)
    assert report["network"].startswith(f"{model} alpha={float(alpha):g}")
    assert report["threads"] == 1 and report["input_shape"] == [1, 3, 224, 224]
    assert report["cpu"] and report["isa"] and report["target"].startswith("llvm -mcpu=")
    serving = report["serving"]
    assert serving["requests"] == 2
    assert list(serving["backends"]) == ["tvm", "onnxruntime", "openvino"]
    for backend, entry in serving["backends"].items():
        assert entry["one"]["runs"] == entry["many"]["runs"] >= 10
        assert entry["gain"] == pytest.approx(entry["many"]["median"] / entry["one"]["median"])
        low, high = entry["interval"]
        assert 0 < low <= high and entry["max_diff"] < 1e-4
        if backend != "tvm":
            assert entry["tvm_over_it"] == pytest.approx(
                serving["backends"]["tvm"]["many"]["median"] / entry["many"]["median"])


def test_results_file_comes_from_the_table2_tool():
    """results/table2.* were written by tools/table2.py: every row of the tool at one
    thread, the same figures in the CSV and the markdown, noisy rows marked, the ratios'
    intervals given, the machine, its ISA, the versions and the 3x3 algorithm policy of
    the code recorded."""
    table2 = load_script("tools/table2.py")
    folder = os.path.join(ROOT, "results")
    reader = csv.DictReader(open(os.path.join(folder, "table2.csv")))
    rows = list(reader)
    assert reader.fieldnames == table2.COLUMNS  # the columns of the tool as it is
    single = [r["network"] for r in rows if (r["threads"], r["batch"]) == ("1", "1")]
    assert single == [r[1] for r in table2.ROWS]
    assert {r["threads"] for r in rows} == {"1", "2"}
    assert {r["network"] for r in rows if r["batch"] == str(table2.BATCH)} == set(table2.BATCH_ROWS)
    text = open(os.path.join(folder, "table2.md")).read()
    assert f"; {table2.SIZE} x {table2.SIZE} inputs. " in text  # the size the tool times
    for key in ("CPU", "ISA", "TVM target", "threads", "versions", "algorithm", "timing",
                "scaling check", "scaling check at batch 8", "search budget", "wall time"):
        assert f"- {key}: " in text
    assert f"- algorithm: {ALGORITHMS}\n" in text  # regenerated with the policy of the code
    for r in rows:
        mark = " ~" if r["noisy"] == "True" else ""
        assert (f"| {r['network']}{mark} | {r['threads']} | {r['batch']} | "
                f"{float(r['macs_m']):.0f} | {float(r['tvm_ms']):.1f} |") in text
        assert float(r["max_diff"]) <= 1e-4
        low, high = float(r["tvm_vs_best_other_low"]), float(r["tvm_vs_best_other_high"])
        assert 0 < low <= high  # every ratio a target judges has its interval
        runs = [int(r[f"{b}_runs"]) for b in ("mxnet", "onnxruntime", "openvino")]
        assert min(runs) >= 5 and int(r["tvm_runs"]) >= max(runs)  # TVM timed every round
    assert "- [" in text.split("## Targets", 1)[1] and "95 % interval" in text
    assert os.path.getsize(os.path.join(folder, "table2.png")) > 10_000


@pytest.mark.parametrize("folder, steady", [("results", True), ("results/avx2", True),
                                            ("results/after_idle", False),
                                            ("results/zen5", True),
                                            ("results/zen5/avx2", True),
                                            ("results/zen5/after_idle", False)])
def test_results_verdicts_are_the_tools_verdicts_on_the_results_rows(folder, steady):
    """The verdict lines of each committed table are what the tool's verdict code
    gives for the committed CSV rows: a change of the verdicts' rules without a new run
    of the table fails here. Its timing line names the calls it timed as the tool does
    (results/after_idle: ``--after-idle``)."""
    table2 = load_script("tools/table2.py")
    text = open(os.path.join(ROOT, folder, "table2.md")).read()
    assert f"- timing: {timed_calls(steady)}; " in text
    meta_line = lambda key: text.split(f"- {key}: ", 1)[1].split("\n", 1)[0]
    meta = {"TVM target": meta_line("TVM target"),
            "tuning records at start": int(meta_line("tuning cache at start").split()[0]),
            "wall_s": float(meta_line("wall time").split()[0]),
            "scaling check": meta_line("scaling check"),
            "scaling check at batch 8": meta_line("scaling check at batch 8")}
    rows = []
    for r in csv.DictReader(open(os.path.join(ROOT, folder, "table2.csv"))):
        rows.append({k: v if k == "network" else int(v) if k in ("threads", "batch")
                     else v == "True" if k == "noisy" else float(v) if v else None
                     for k, v in r.items()})
    for what, ok, figure in table2.verdicts(rows, meta):
        assert f"- [{table2.MARKS[ok]}] {what}: {figure}\n" in text, what


def _worker_output(threads, rows, batch_rows=()):
    """What a table2 worker writes, from ``{label: (MMACs, {backend: ms})}``; ``ms`` a
    time per round (a list) or one time for all of 10 rounds."""
    def results(specs):
        out = {}
        for label, (macs, times) in specs.items():
            times = {b: list(ms) if isinstance(ms, list) else [ms] * 10
                     for b, ms in times.items()}
            out[label] = {"macs": macs * 1e6, "max_diff": {"tvm": 5e-6},
                          "tvm": {"searches": 0}, "times": times,
                          "ms": {b: summarize(ms) for b, ms in times.items()}}
        return out
    return {"threads": threads, "groups": {"resnet": results(rows)},
            "batch": {"resnet": results(dict(batch_rows))} if batch_rows else {},
            "checks": {"groups": {}, "batch": {}}}


def test_table2_rows_and_verdicts_follow_the_targets():
    table2 = load_script("tools/table2.py")

    def runs(vanilla, oct_, others, vanilla_1=None, oct_1=None):
        both = {"vanilla ResNet-50": (4000, dict(tvm=vanilla, **others)),
                "Oct-ResNet-50 alpha=.5": (2400, dict(tvm=oct_, **others))}
        if not vanilla_1:  # alpha 0 is no Oct network: slow as it is, no verdict sees it
            both["Oct-ResNet-50 alpha=0"] = (4000, dict(tvm=3 * vanilla, **others))
        if vanilla_1:
            both["vanilla ResNet-50"][1]["tvm_1"] = vanilla_1
            both["Oct-ResNet-50 alpha=.5"][1]["tvm_1"] = oct_1
        return both

    def others(ms):
        return dict(mxnet=ms, onnxruntime=ms + 5, openvino=ms + 10)

    meta = {"TVM target": "llvm -mcpu=x", "tuning records at start": 12, "wall_s": 60}
    good = [_worker_output(1, runs(80, 49, others(100))),
            _worker_output(2, runs(42, 26, others(45), 80, 49),
                           [("vanilla ResNet-50", (4000, dict(tvm=300, **others(320))))])]
    rows = table2.table(good, 0.05)
    oct_row = next(r for r in rows if r["network"] == "Oct-ResNet-50 alpha=.5")
    assert oct_row["speedup"] == pytest.approx(80 / 49)
    assert oct_row["macs_ratio"] == pytest.approx(4000 / 2400)
    assert oct_row["tvm_vs_best_other"] == pytest.approx(49 / 100)
    # the same ratio over the zoo's alpha-0 network: printed beside, not judged
    assert oct_row["alpha0_speedup_over_macs_ratio"] == pytest.approx(240 / 49 * 2400 / 4000)
    assert oct_row["alpha0_speedup_over_macs_ratio_low"] == pytest.approx(240 / 49 * 0.6)
    assert rows[-1]["batch"] == table2.BATCH
    assert rows[-1]["images_per_s"] == pytest.approx(8 / 0.3)
    assert next(r for r in rows if r["threads"] == 2)["scaling"] == pytest.approx(80 / 42)
    checks = table2.verdicts(rows, meta)
    assert len(checks) == 8 and all(ok for _, ok, _ in checks), checks
    assert checks[1][2].endswith("(over the alpha-0 network, not judged: lowest "
                                 "2.94 [2.94-2.94], Oct-ResNet-50 alpha=.5)")
    bad = [_worker_output(1, runs(95, 105, others(100))),
           _worker_output(2, runs(60, 50, others(45), 95, 70),
                          [("vanilla ResNet-50", (4000, dict(tvm=350, **others(320))))])]
    checks = table2.verdicts(table2.table(bad, 0.05), dict(meta, wall_s=120))
    assert len(checks) == 8 and not any(ok for _, ok, _ in checks), checks
    cold = table2.verdicts(rows, dict(meta, wall_s=300, **{"tuning records at start": 0}))
    assert cold[-1][:2] == ("wall time from an empty cache <= 6 min", True)
    # the machine's scaling check of each 2-thread group: its 1 -> 2 thread ratio with
    # the interval, and the data-passing passes' time over the in-core ones', beside
    # the scaling verdict's figure
    assert table2.check_figures(good, "groups") is None
    for part, group, one, two, own, passed in (("groups", "resnet", 4.0, 2.5, 0.2, 0.6),
                                               ("groups", "mobilenet", 3.0, 2.0, 0.2, 2.2),
                                               ("batch", "resnet", 5.0, 2.5, 0.25, 0.5)):
        good[1]["checks"][part][group] = {"times": {
            "tvm_1": [one] * 10, "tvm": [two] * 10, "own": [own] * 10, "passed": [passed] * 10}}
    figures = table2.check_figures(good, "groups")
    assert figures == ("ResNets 1.60 [1.60-1.60] (spread 0 % on 2 threads), reading another "
                       "core's writes 3.00 [3.00-3.00] x as long as one's own; "
                       "MobileNets 1.50 [1.50-1.50] (spread 0 % on 2 threads), reading "
                       "another core's writes 11.00 [11.00-11.00] x as long as one's own")
    batch_figures = table2.check_figures(good, "batch")
    assert batch_figures == ("ResNets 2.00 [2.00-2.00] (spread 0 % on 2 threads), reading "
                             "another core's writes 2.00 [2.00-2.00] x as long as one's own")
    assert table2.check_figures(good + [dict(good[1], threads=4)], "batch") == (
        batch_figures + "; " + batch_figures.replace("on 2 threads", "on 4 threads"))
    # a machine slow in half the rounds: the 2-thread calls take 2 or 3 ms, the
    # interquartile range 1 ms over a median of 2.5; passing data between the cores
    # 0.4 or 2.0 ms against 0.2 in core: the median 1.2 ms, 6 x, its interval wide
    wavering = {"threads": 2, "checks": {"groups": {"resnet": {"times": {
        "tvm_1": [5.0] * 10, "tvm": [2.0, 3.0] * 5, "own": [0.2] * 10,
        "passed": [0.4, 2.0] * 5}}}}}
    figure = table2.check_figures([wavering], "groups")
    assert "(spread 40 % on 2 threads), reading another core's writes 6.00 [" in figure
    low, high = (float(v) for v in figure.split("writes 6.00 [")[1].split("]")[0].split("-"))
    assert 2.0 <= low < 6.0 < high <= 10.0
    checks = table2.verdicts(rows, dict(meta, **{"scaling check": figures,
                                                  "scaling check at batch 8": batch_figures}))
    note = "; the machine's scaling check in the same rounds: "
    scaling, = [c for c in checks if c[0].startswith("TVM scaling")]
    assert scaling[1] is True and scaling[2].endswith(note + figures)
    batch, = [c for c in checks if c[0].startswith("batch 8")]
    assert batch[1] is True and batch[2].endswith(note + batch_figures)


def test_scaling_check_is_a_convolution_on_one_and_two_threads_built_once(cache,
                                                                          monkeypatch):
    """The machine's scaling check computes, on one thread and on two, the 3x3
    convolution (plus bias) that NumPy computes from its unpacked arrays; its
    data-passing passes on two threads compute, from each thread's row, its own row's
    values or the other thread's, as NumPy does; a second check with the same cache
    loads its library and builds nothing."""
    runners = scaling_check(2, make_target(), cache)
    assert (runners["tvm_1"].threads, runners["tvm"].threads) == (1, 2)
    (check, args), = runners["tvm"].calls
    data, weight, shift, out = [a.numpy() for a in args]
    n, blocks, h, w, lanes = data.shape
    x = data.transpose(0, 1, 4, 2, 3).reshape(n, blocks * lanes, h, w)
    # weights (out block, in block, 3, 3, in lane, out lane) -> (out, in, 3, 3)
    kernel = weight.transpose(0, 5, 1, 4, 2, 3).reshape(blocks * lanes, blocks * lanes, 3, 3)
    want = conv2d(x.astype(np.float64), kernel.astype(np.float64), (1, 1), shift.reshape(-1))
    for threads in ("tvm_1", "tvm"):
        args[-1].copyfrom(np.zeros_like(out))
        runners[threads].prepare()
        runners[threads]()
        got = args[-1].numpy().transpose(0, 1, 4, 2, 3).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
    for read, rows in (("own", [0, 1]), ("passed", [1, 0])):
        runner = runners[read]
        assert (runner.threads, runner.repeat) == (2, PASSES)
        (write, (x, y)), (_, (y_read, z)) = runner.calls
        assert y_read is y  # the rows the first kernel wrote
        rng = np.random.default_rng(1)
        source = rng.standard_normal(x.shape).astype("float32")
        x.copyfrom(source)
        z.copyfrom(np.zeros(z.shape, "float32"))
        runner.prepare()
        runner()
        assert z.shape == (2, PART_FLOATS)
        np.testing.assert_allclose(y.numpy(), source / 2 + 1, rtol=1e-6)
        np.testing.assert_allclose(z.numpy(), source[rows] + 1, rtol=1e-5, atol=1e-6)

    def no_build(*args, **kwargs):
        raise AssertionError("the check's library was built again")
    monkeypatch.setattr(tvm, "compile", no_build)
    scaling_check(2, make_target(), cache)["passed"]()


def test_table2_stops_timing_a_backend_only_when_it_is_clearly_not_the_fastest_other():
    """After 10 runs a backend whose first quartile lies above the fastest other's third
    quartile stops, noisy or not; one whose times overlap the fastest's goes on, and so
    does everything before 10 runs. In the loop, real calls: TVM's and ONNX Runtime's
    of 2 ms, MXNet's of 8, OpenVINO's of 1.8 and 2.6 by turns (slower by median, faster
    by its first quartile); MXNet is called 10 times, the others up to the round limit;
    a loose tolerance ends the loop after 10 runs, not at its first step of 5, nor later,
    though the machine's scaling check in the loop is far noisier."""
    table2 = load_script("tools/table2.py")
    rng = np.random.default_rng(0)
    times = {("net", "tvm"): list(5 + rng.random(10)),
             ("net", "onnxruntime"): list(10 + rng.random(10)),
             ("net", "openvino"): list(10.2 + rng.random(10)),  # overlaps the fastest
             ("net", "mxnet"): list(12 + 30 * rng.random(10))}  # slow and noisy
    assert table2.not_needed(times) == {("net", "mxnet")}
    assert table2.not_needed({k: v[:5] for k, v in times.items()}) == set()

    def sleeper(*ms):
        turns = iter(np.resize(ms, 1000))
        return lambda: time.sleep(next(turns) / 1e3)

    runners = {("net", b): sleeper(*ms) for b, ms in (
        ("tvm", [2]), ("mxnet", [8]), ("onnxruntime", [2]), ("openvino", [1.8, 2.6]))}
    # the machine's scaling check beside them, noisy (1 or 9 ms by turns): called in
    # every round, it does not hold the loop
    beside = {("check", b): sleeper(1, 9) for b in ("tvm", "tvm_1")}
    # (each call timed, steady=False, so that the times take turns as the sleeps do)
    runs = {k: len(v) for k, v in table2.time_rounds(runners, 1e-9, 15, beside,
                                                     steady=False).items()}
    assert runs == {("net", "tvm"): 15, ("net", "mxnet"): 10, ("net", "onnxruntime"): 15,
                    ("net", "openvino"): 15, ("check", "tvm"): 15, ("check", "tvm_1"): 15}
    runs = {len(v) for v in table2.time_rounds(runners, 0.99, 15, beside).values()}
    assert runs == {10}


TIME_GROUP = """
import json, sys
from types import SimpleNamespace
sys.path.insert(0, "tests")
from helpers import load_script
from octconv.deploy.bench import zoo_network
from octconv.deploy.target import make_target
from octconv.deploy.tuning import TileCache
table2 = load_script("tools/table2.py")
networks = {"vanilla ResNet-50": zoo_network("resnet10_v2_mini", 0.5, classes=10, size=32)}
threads, steady = int(sys.argv[2]), sys.argv[3] == "steady"  # else --after-idle
args = SimpleNamespace(budget=1, tolerance=1e-9, max_runs=10, after_idle=not steady)
group, check = table2.time_group(networks, threads, 2, args, TileCache(sys.argv[1]),
                                 make_target(), scaling=threads > 1, size=32)
check = check or {"times": {}}
row, = table2.table([{"threads": threads, "groups": {"resnet": group}, "batch": {}}], 0.05)
result = group["vanilla ResNet-50"]
print(json.dumps({"runs": {b: len(ms) for b, ms in result["times"].items()},
                  "check": {b: len(ms) for b, ms in check["times"].items()},
                  "diff": max(result["max_diff"].values()),
                  "ratio": [row["tvm_vs_best_other"], row["tvm_vs_best_other_low"]],
                  "scaling": [row["scaling"], row["scaling_low"]]}))
"""


@pytest.mark.parametrize("threads, timing", [(1, "after idle"), (2, "steady")])
def test_table2_times_a_group_on_the_four_backends_in_one_loop(tmp_path, threads, timing):
    """The table's group timing on real backends (a small network, batch 2, in a process
    started with MXNet's thread count): each backend's output agrees with MXNet, every
    backend runs the 10 rounds of the limit (none stops before 10), and the row's ratio
    comes with its interval. On two threads the library runs on one thread too, and the
    machine's scaling check on one and on two and its data-passing passes on two, in
    every round. (On one thread each timed
    call is the first after the idle wait, ``--after-idle``.)"""
    out = subprocess.run([sys.executable, "-c", TIME_GROUP, str(tmp_path / "tiles.json"),
                          str(threads), timing],
                         check=True, capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, OMP_NUM_THREADS=str(threads))).stdout
    result = json.loads(out.splitlines()[-1])
    scaled = {"tvm_1"} if threads > 1 else set()
    assert set(result["runs"]) == {"tvm", "mxnet", "onnxruntime", "openvino"} | scaled
    assert set(result["runs"].values()) == {10}
    assert result["check"] == ({"tvm": 10, "tvm_1": 10, "own": 10, "passed": 10}
                               if threads > 1 else {})
    assert result["diff"] < 1e-4
    ratio, low = result["ratio"]
    assert 0 < low <= ratio
    scaling, low = result["scaling"]
    assert (0 < low <= scaling) if threads > 1 else scaling is None


@pytest.mark.parametrize("after_idle", [False, True])
def test_table2_workers_get_the_options_of_the_run(tmp_path, after_idle):
    """Each thread count's worker process times with the options of the table run,
    ``--after-idle`` among them."""
    table2 = load_script("tools/table2.py")
    args = table2.parse(["--only", "mobilenet", "--budget", "2", "--tolerance", "0.1",
                         "--max-runs", "20", "--target", "haswell", "--out-dir",
                         str(tmp_path)] + (["--after-idle"] if after_idle else []))
    worker = table2.parse(table2.worker_arguments(args, 2, str(tmp_path / "2.json"),
                                                  str(tmp_path / "tiles.json"), 2))
    for option in ("only", "budget", "tolerance", "max_runs", "target", "after_idle"):
        assert getattr(worker, option) == getattr(args, option), option
    assert worker.after_idle is after_idle
    assert (worker.worker, worker.json, worker.cache, worker.batch_threads) == (
        2, str(tmp_path / "2.json"), str(tmp_path / "tiles.json"), 2)


def test_table2_row_pairs_the_rounds_of_a_fastest_other_that_stopped():
    """A backend stopped after 10 runs and then found the fastest (the others drifted
    up): TVM over it, figure and interval, pairs TVM's first 10 rounds with its 10, not
    TVM's later, slower rounds (its median over all 30 is 44 ms)."""
    table2 = load_script("tools/table2.py")
    tvm = [40.0] * 10 + [44.0] * 20
    rows = table2.table([_worker_output(1, {"vanilla ResNet-50": (4000, dict(
        tvm=tvm, mxnet=[80.0] * 30, onnxruntime=[50.0] * 10, openvino=[52.0] * 30))})],
        0.05)
    assert rows[0]["tvm_ms"] == 44
    assert rows[0]["tvm_vs_best_other"] == pytest.approx(40 / 50)
    assert (rows[0]["tvm_vs_best_other_low"], rows[0]["tvm_vs_best_other_high"]) == \
        pytest.approx((40 / 50, 40 / 50))
    assert (rows[0]["tvm_runs"], rows[0]["onnxruntime_runs"], rows[0]["openvino_runs"]) == \
        (30, 10, 30)


def test_ratio_interval_pairs_the_rounds_and_covers_the_true_ratio():
    """Rounds are resampled whole: a machine speed that drifts over the rounds moves
    both times of a round and leaves a ratio that is constant per round exact, where
    resampling the two lists apart would spread it. On noisy times from known
    distributions the 95 % interval holds the true ratio of medians about 95 % of
    the time, and narrows as rounds are added."""
    drift = 1 + 0.5 * np.sin(np.arange(30))
    low, high = ratio_interval(2 * 10 * drift, 10 * drift)
    assert low == pytest.approx(2, rel=1e-12) and high == pytest.approx(2, rel=1e-12)
    shuffled = np.random.default_rng(1).permutation(2 * 10 * drift)
    low, high = ratio_interval(shuffled, 10 * drift)
    assert high - low > 0.2  # unpaired, the drift is noise
    rng = np.random.default_rng(2)
    widths = {}
    for rounds in (10, 40):
        held, width = 0, []
        for _ in range(200):  # lognormal times, medians 20 and 10: true ratio 2
            num = 20 * np.exp(rng.normal(0, 0.1, rounds))
            den = 10 * np.exp(rng.normal(0, 0.1, rounds))
            low, high = ratio_interval(num, den, resamples=500, seed=int(rng.integers(1e9)))
            held += low <= 2 <= high
            width.append(high - low)
        assert 0.85 <= held / 200 <= 1.0, (rounds, held)
        widths[rounds] = np.median(width)
    assert widths[40] < 0.7 * widths[10]
    with pytest.raises(ValueError, match="paired rounds"):
        ratio_interval([1, 2, 3], [1, 2])


def test_differences_are_relative_to_the_reference_outputs_scale():
    """Worked by hand: outputs (1, -3) against MXNet's (1, -2) differ by 1 at a scale of
    2; every runner but MXNet's is compared, and without MXNet nothing is."""
    assert relative_difference(np.array([1.0, -3.0]), np.array([1.0, -2.0])) == 0.5
    runners = {"mxnet": lambda: np.array([1.0, -2.0]), "tvm": lambda: np.array([1.0, -3.0]),
               "openvino": lambda: np.array([1.0, -2.0])}
    assert differences_from_mxnet(runners) == {"tvm": 0.5, "openvino": 0.0}
    assert differences_from_mxnet({"tvm": runners["tvm"]}) == {}


def test_table2_marks_a_target_within_the_noise_and_writes_the_intervals(tmp_path):
    """A ratio whose interval holds the threshold is neither reached nor missed: the
    verdict is None and the markdown marks it [~]; the intervals reach the CSV and the
    table's cells."""
    table2 = load_script("tools/table2.py")
    others = dict(mxnet=[100] * 10, onnxruntime=[105] * 10, openvino=[110] * 10)
    # the alpha .5 row takes 47 or 51 ms by turns: speed-up / MACs ratio
    # (80 / 47 .. 80 / 51) / (4000 / 2400) = 0.94 .. 1.02 around 0.95
    rows = {"vanilla ResNet-50": (4000, dict(tvm=[80] * 10, **others)),
            "Oct-ResNet-50 alpha=.5": (2400, dict(tvm=[47, 51] * 5, **others))}
    out = table2.table([_worker_output(1, rows)], 0.05)
    oct_row = out[1]
    assert oct_row["speedup_over_macs_ratio_low"] == pytest.approx(80 / 51 / (4000 / 2400))
    assert oct_row["speedup_over_macs_ratio_high"] == pytest.approx(80 / 47 / (4000 / 2400))
    meta = {"TVM target": "llvm -mcpu=x", "tuning records at start": 12, "wall_s": 60,
            "CPU": "test", "scaling check": None}  # (a run without 2-thread groups)
    checks = dict((what, ok) for what, ok, _ in table2.verdicts(out, meta))
    assert checks["Oct-ResNet-50 speed-up >= 0.95 x MACs ratio at every alpha "
                  "(llvm -mcpu=x)"] is None
    assert checks["1 thread: vanilla ResNet-50 TVM <= 0.9 x the fastest other backend"] is True
    table2.write(out, table2.verdicts(out, meta), meta, str(tmp_path))
    text = open(tmp_path / "table2.md").read()
    assert "- CPU: test\n" in text and "scaling check" not in text
    assert "- [~] Oct-ResNet-50 speed-up >= 0.95 x MACs ratio" in text
    assert f"| {80 / 49 / (4000 / 2400):.2f} [{80 / 51 / (4000 / 2400):.2f}-" \
           f"{80 / 47 / (4000 / 2400):.2f}] |" in text
    written = list(csv.DictReader(open(tmp_path / "table2.csv")))
    assert float(written[1]["speedup_over_macs_ratio_high"]) == pytest.approx(
        80 / 47 / (4000 / 2400))


def test_table2_verdict_names_the_rows_that_leave_a_target_within_the_noise():
    """The figure of a verdict names the worst row by its ratio; when the target is
    within the noise because of another row's interval, that row is named too. Batch 8:
    the vanilla ResNet-50 at 0.95 x the best other's time, steady, is the slowest by
    median; the Oct row, 0.84 or 1.04 by turns, holds 1 in its interval."""
    table2 = load_script("tools/table2.py")
    others = dict(mxnet=[100.0] * 10, onnxruntime=[110.0] * 10, openvino=[120.0] * 10)
    batch_rows = [("vanilla ResNet-50", (4000, dict(tvm=[95.0] * 10, **others))),
                  ("Oct-ResNet-50 alpha=.5", (2400, dict(tvm=[84.0, 104.0] * 5, **others)))]
    rows = table2.table([_worker_output(2, {}, batch_rows)], 0.05)
    meta = {"TVM target": "llvm -mcpu=x", "tuning records at start": 12, "wall_s": 60}
    (ok, figure), = [(ok, figure) for what, ok, figure in table2.verdicts(rows, meta)
                     if what.startswith("batch")]
    assert ok is None
    assert figure == ("slowest 0.95 [0.95-0.95] x the best other's time (vanilla ResNet-50);"
                      " within the noise: Oct-ResNet-50 alpha=.5 0.94 [0.84-1.04]")


@pytest.mark.parametrize("oct_macs, oct_ms, oct_ms_2, verdict, named", [
    (318, 6.0, 3.2, True, ""),
    (550, 10.2, 5.5, False, "; slower than vanilla: Oct-MobileNet v1 1.0 alpha=.5 0.98 "
                            "[0.98-0.98], Oct-MobileNet v1 1.0 alpha=.5 (2 threads) 0.91 "
                            "[0.91-0.91]"),
    (318, 6.0, 5.5, False, "; slower than vanilla: Oct-MobileNet v1 1.0 alpha=.5 (2 threads) "
                           "0.91 [0.91-0.91]"),
    (318, 6.0, [4.5, 5.5] * 5, None, "; as fast as vanilla within the noise: Oct-MobileNet "
                                     "v1 1.0 alpha=.5 (2 threads) 1.00 [0.91-1.11]"),
    (318, [5.4, 6.6] * 5, 3.2, None, "")])
def test_table2_mobilenet_verdict_needs_the_ratio_and_a_speed_up(oct_macs, oct_ms, oct_ms_2,
                                                                 verdict, named):
    """An Oct-MobileNet v1 1.0 against its twin (569 M multiply-adds, 10 ms on 1 thread,
    5 on 2): at 318 M, 6 ms is 0.93 of the MACs ratio (reached); at 550 M, 10.2 ms is
    0.95 of it but slower than the twin, and so is 5.5 ms on 2 threads (missed, both
    named); 5.5 ms on 2 threads alone misses too (the twin must be beaten in every row,
    the ratio of 0.9 only on 1 thread); 4.5 or 5.5 ms by turns on 2 threads, and 5.4 or
    6.6 ms by turns on 1 (0.9 inside the interval), are within the noise."""
    table2 = load_script("tools/table2.py")
    others = dict(mxnet=20.0, onnxruntime=21.0, openvino=22.0)

    def rows(vanilla_ms, ms):
        return {"vanilla MobileNet v1 1.0": (569, dict(tvm=vanilla_ms, **others)),
                "Oct-MobileNet v1 1.0 alpha=.5": (oct_macs, dict(tvm=ms, **others))}
    two = rows(5.0, oct_ms_2)
    two["vanilla MobileNet v1 1.0"][1]["tvm_1"] = 10.0
    two["Oct-MobileNet v1 1.0 alpha=.5"][1]["tvm_1"] = oct_ms
    table = table2.table([_worker_output(1, rows(10.0, oct_ms)), _worker_output(2, two)], 0.05)
    meta = {"TVM target": "llvm -mcpu=x", "tuning records at start": 12, "wall_s": 60}
    (ok, figure), = [(ok, figure) for what, ok, figure in table2.verdicts(table, meta)
                     if what.startswith("Oct-MobileNets")]
    assert ok is verdict, figure
    assert figure.endswith(f"(Oct-MobileNet v1 1.0 alpha=.5){named}"), figure
