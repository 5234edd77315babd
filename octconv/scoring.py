"""Center-crop evaluation of a checkpoint at one or more test sizes.

A checkpoint is a run folder or manifest written by train_imagenet.py (its config
travels with it), a parameter file (``.params``) with a network name and alpha (this
project's names, or any form of the original release's, converted by
:mod:`octconv.release`), or a Symbol checkpoint (``prefix-symbol.json`` with
``prefix-NNNN.params``), which is scored through its own graph.
Presets (docs/ARCHITECTURES.md 4.2, 4.3): ``imagenet`` (bilinear resize to
ceil(size / 0.875), GluonCV mean / std) and ``release-symbol`` (bicubic, mean
(124, 117, 104), scale 0.0167, i.e. std 1 / 0.0167, as the release's Symbol checkpoints).
A library compiled with TVM from a checkpoint (:class:`CompiledLibrary`) is scored on
the same batches as its checkpoint's network, so that the two accuracies can be compared.
"""
import glob
import os
import time

import mxnet as mx
import numpy as np
from mxnet import gluon

from octconv import checkpoint
from octconv.config import DEFAULTS, from_dict
from octconv.data import val_batches
from octconv.release import ReleaseNameError, from_release, release_format
from octconv.models import build_network, evaluate

__all__ = ["PRESETS", "load_for_scoring", "CompiledLibrary", "center_crop_batches", "score"]

PRESETS = {
    "imagenet": dict(mean=[123.68, 116.779, 103.939], std=[58.393, 57.12, 57.375],
                     interp="bilinear", crop_ratio=0.875),
    "release-symbol": dict(mean=[124.0, 117.0, 104.0], std=[1 / 0.0167] * 3,
                           interp="bicubic", crop_ratio=0.875),
}


def _symbol_checkpoint(path, ctx):
    """A Symbol checkpoint (its newest ``prefix-NNNN.params``) as a block giving logits:
    a trailing SoftmaxOutput, as in the release's files, is cut off."""
    prefix = path[:-len("-symbol.json")]
    epochs = sorted(glob.glob(f"{prefix}-[0-9][0-9][0-9][0-9].params"))
    if not epochs:
        raise checkpoint.CheckpointError(f"no {prefix}-NNNN.params beside {path}")
    sym = mx.sym.load(path)
    if "softmax_label" in sym.list_arguments():
        sym = sym.get_children()[0]
    net = gluon.SymbolBlock(sym, mx.sym.var("data"))
    saved = checkpoint.read_params(epochs[-1])
    checkpoint.load_params(net, {k: v for k, v in saved.items() if k in net.collect_params()},
                           ctx, epochs[-1])
    return net


def load_for_scoring(path, model=None, alpha=None, classes=None, ctx=(mx.cpu(),)):
    """``(net, config dict)`` for any accepted checkpoint; the config dict holds what the
    checkpoint says about the model and its data recipe (empty for plain files)."""
    ctx = list(ctx)
    if path.endswith("-symbol.json"):
        return _symbol_checkpoint(path, ctx), {}
    if os.path.isdir(path) or path.endswith(".json"):
        manifest = checkpoint.load_manifest(path)
        config = manifest["config"]
        params = manifest["params"]
    else:
        if not os.path.isfile(path):
            raise checkpoint.CheckpointError(f"checkpoint not found: {path}")
        if model is None:
            raise checkpoint.CheckpointError(
                f"{path} is a bare parameter file: give the network (--model, --alpha)")
        config, params = {}, path
    model_cfg = dict(config.get("MODEL", {}))
    for key, value in (("name", model), ("alpha", alpha), ("classes", classes)):
        if value is not None:
            model_cfg[key] = value
    cfg = from_dict({"MODEL": {**model_cfg, "api": "gluon", "dropout": 0.0}}, source=path)
    net = build_network(cfg)
    saved = checkpoint.read_params(params)
    if release_format(saved, cfg.MODEL.name):
        expected = {n: p.shape for n, p in net.collect_params().items()}
        try:
            saved = {k: mx.nd.array(v) for k, v in
                     from_release(saved, cfg.MODEL.name, expected).items()}
        except ReleaseNameError as err:
            raise checkpoint.CheckpointError(f"{params}: {err}") from None
    checkpoint.load_params(net, saved, ctx, params)
    return net, config


class CompiledLibrary:
    """A library written by :meth:`octconv.deploy.CompiledNetwork.export` as a network
    :func:`score` evaluates: a batch (NDArray) in, its logits (NDArray) out, run in
    chunks of the batch size it was compiled for, the last chunk filled up with zeros
    (their logits dropped), on ``threads`` threads (0: all cores). ``size``: the image
    size it was compiled for, the only one it takes. :meth:`check_computes` tells
    whether it computes a given network (a library compiled from another checkpoint
    would be scored as if it were this one's)."""

    def __init__(self, path, threads=0):
        from octconv.deploy import load_library  # (TVM: the deploy extra)
        self.path = path
        self.run = load_library(path, threads)
        if self.run.input_shape is None:
            raise ValueError(f"{path} does not record the input shape it was compiled for "
                             "(an older library); compile it again")
        self.batch, _, self.size, _ = self.run.input_shape

    def check_computes(self, net, ctx, tolerance=1e-3):
        """Raise a ValueError unless this library computes ``net`` (a Gluon block): their
        logits of one random batch must agree within ``tolerance`` of their scale."""
        from octconv.deploy.bench import random_input, relative_difference
        x = random_input(self.run.input_shape)
        want = net(mx.nd.array(x, ctx=ctx)).asnumpy()
        got = self.run(x)
        if got.shape != want.shape:
            raise ValueError(f"{self.path} does not compute the checkpoint's network: its "
                             f"logits have the shape {got.shape}, the network's {want.shape}")
        difference = relative_difference(got, want)
        if difference > tolerance:
            raise ValueError(f"{self.path} does not compute the checkpoint's network: on one "
                             f"input their logits differ by up to {difference:.2g} x the "
                             "network's largest |logit|")

    def __call__(self, x):
        x = x.asnumpy()
        logits = []
        for start in range(0, len(x), self.batch):
            chunk = x[start:start + self.batch]
            filled = np.concatenate([chunk, np.zeros((self.batch - len(chunk),) + x.shape[1:],
                                                     x.dtype)])
            logits.append(self.run(filled)[:len(chunk)])
        return mx.nd.array(np.concatenate(logits))


def center_crop_batches(data_path, kind, size, preset=None, data_cfg=None, batch_size=50,
                        clips=None):
    """Center-crop batches of ``data_path`` (``kind`` 'rec', 'folder' or 'clips') at
    ``size`` px: mean / std / crop ratio / resize of ``data_cfg`` (a checkpoint's DATA
    section) or of the named ``preset``; videos: the checkpoint's clip length and
    ``clips`` windows per video (default: its DATA.test_clips)."""
    recipe = {k: (data_cfg or {}).get(k, DEFAULTS["DATA"][k])
              for k in ("mean", "std", "crop_ratio", "interp", "frames", "test_clips")}
    if preset:
        recipe = dict(PRESETS[preset])
    if clips:
        recipe["test_clips"] = clips
    return val_batches(from_dict({"DATA": dict(recipe, kind=kind, val=data_path,
                                               train=data_path, size=size,
                                               batch_size=batch_size)}))


def score(net, data_path, kind, sizes=(224,), preset=None, data_cfg=None, batch_size=50,
          ctx=(mx.cpu(),), progress=None, clips=None):
    """Top-1 / top-5 and images (videos) per second at each test size (batches of
    :func:`center_crop_batches`) of ``net``, a Gluon block or a
    :class:`CompiledLibrary`. Returns a list of dicts, one per size."""
    if isinstance(net, gluon.HybridBlock):
        net.hybridize()
    results = []
    for size in sizes:
        batches = center_crop_batches(data_path, kind, size, preset, data_cfg, batch_size,
                                      clips)
        started = time.time()
        top1, top5, count = evaluate(net, batches, list(ctx))
        elapsed = time.time() - started
        results.append(dict(size=size, top1=top1, top5=top5, images=count,
                            images_per_sec=count / elapsed))
        if progress:
            progress(results[-1])
    return results
