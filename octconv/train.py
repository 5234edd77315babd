"""Training: a network from the zoo, a config, one or many devices or machines.

``fit(cfg, resume)`` runs the release's recipe (shared/spec/ARCHITECTURES.md 4.1): NAG
or SGD with momentum and weight decay (optionally none on BN and biases), per-iteration
warm-up then cosine (or step) LR, label smoothing, mixup with its off-epochs, MSRA-PReLU
init, optional zero-init of the last BN of residual branches, fp16 with multi-precision.
Both APIs train through Gluon (the Symbol network as a SymbolBlock), so their
checkpoints are the same. See :mod:`octconv.checkpoint` for what survives a kill.
"""
import json
import math
import os
import signal
import sys
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from octconv import checkpoint
from octconv.config import dump
from octconv.data import train_batches, val_batches
from octconv.schedule import WarmupSchedule
from octconv.targets import mixup, smooth_one_hot

__all__ = ["TrainingError", "devices", "build_network", "fit", "evaluate", "params_digest"]


class TrainingError(RuntimeError):
    """A run that cannot go on (NaN loss, a network without residual BNs for last_gamma)."""


def devices(spec):
    """``"cpu"`` or GPU ids such as ``"0,1"`` -> list of contexts."""
    if spec == "cpu":
        return [mx.cpu()]
    try:
        return [mx.gpu(int(i)) for i in spec.split(",")]
    except ValueError:
        raise TrainingError(f"TRAIN.devices must be 'cpu' or GPU ids like '0,1', got {spec!r}")


def build_network(cfg):
    """The network of ``cfg.MODEL`` in the chosen API, as a Gluon block (uninitialized)."""
    model = cfg.MODEL
    if model.api == "gluon":
        from octconv.gluon import get_model
        return get_model(model.name, alpha=model.alpha, classes=model.classes,
                         dropout=model.dropout)
    from octconv.symbol import get_symbol
    sym = get_symbol(model.name, alpha=model.alpha, num_classes=model.classes,
                     dropout=model.dropout)
    logits = sym.get_internals()["classifier_output"]
    net = gluon.SymbolBlock(logits, mx.sym.var("data"))
    params = net.collect_params()
    for name, param in params.items():  # BN and biases start as Gluon's layers start them
        if name.endswith(("_gamma", "_running_var")):
            param.init = "ones"
        elif name.endswith(("_beta", "_running_mean", "_bias")):
            param.init = "zeros"
    for name, attrs in logits.attr_dict().items():
        if float(attrs.get("__lr_mult__", 1)) == 0 and name in params:
            params[name].grad_req = "null"
    return net


def _initialize(net, cfg, ctx):
    net.initialize(mx.init.MSRAPrelu(), ctx=ctx)
    if cfg.MODEL.last_gamma:
        from octconv.symbol import residual_end_bns
        names = residual_end_bns(cfg.MODEL.name, cfg.MODEL.alpha)
        if not names:
            raise TrainingError(f"MODEL.last_gamma: {cfg.MODEL.name} has no BatchNorm ending "
                                f"a residual branch (pre-activation and dense networks)")
        params = net.collect_params()
        for name in names:
            for branch in "hl":
                key = f"{name}-{branch}_gamma"
                if key in params:
                    params[key].set_data(mx.nd.zeros(params[key].shape))
    if cfg.OPTIM.dtype != "float32":
        net.cast(cfg.OPTIM.dtype)


def _trainer(net, cfg, iters_per_epoch, kvstore, begin_iteration=0):
    """Gluon Trainer with the recipe's optimizer and schedule. A distributed kvstore
    updates on its servers (every worker pulls the same weights); the optimizer starts
    at ``begin_iteration`` so a resumed schedule continues."""
    optim = cfg.OPTIM
    if optim.no_wd:
        for name, param in net.collect_params().items():
            if name.endswith(("_beta", "_gamma", "_bias")):
                param.wd_mult = 0.0
    schedule = WarmupSchedule(optim.lr, iters_per_epoch, optim.epochs, optim.warmup_epochs,
                              optim.warmup_lr, optim.lr_mode, optim.step_epochs,
                              optim.step_factor)
    params = dict(learning_rate=optim.lr, wd=optim.wd, momentum=optim.momentum,
                  lr_scheduler=schedule, multi_precision=optim.dtype != "float32",
                  begin_num_update=begin_iteration)
    distributed = not isinstance(kvstore, str)
    return gluon.Trainer(net.collect_params(), optim.optimizer, params, kvstore=kvstore,
                         update_on_kvstore=distributed), schedule


def evaluate(net, batches, ctx, dtype="float32"):
    """``(top-1, top-5, images)`` of ``net`` over ``batches`` (inference mode)."""
    top1, top5 = mx.metric.Accuracy(), mx.metric.TopKAccuracy(5)
    for data, label in batches.epoch(0, 0):
        for x, y in zip(gluon.utils.split_and_load(data, ctx, even_split=False),
                        gluon.utils.split_and_load(label, ctx, even_split=False)):
            out = net(x.astype(dtype)).astype("float32")
            top1.update(y, out)
            top5.update(y, out)
    return top1.get()[1], top5.get()[1], top1.num_inst


def params_digest(net):
    """A short fingerprint of the learnable parameters (equal digests: equal values).
    BatchNorm running statistics are left out: each distributed worker keeps its own."""
    import hashlib
    digest = hashlib.sha256()
    for name, param in sorted(net.collect_params().items()):
        if param.grad_req == "null":
            continue
        digest.update(name.encode())
        digest.update(param.data().asnumpy().astype("float32").tobytes())
    return digest.hexdigest()[:16]


class _StopRequest:
    """SIGINT / SIGTERM ask the loop to save and stop after the current batch."""

    def __init__(self):
        self.signal = None
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def restore(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def _progress(total, epoch, quiet):
    from tqdm import tqdm
    return tqdm(total=total, desc=f"epoch {epoch}", unit="batch", leave=False, file=sys.stderr,
                disable=quiet or not sys.stderr.isatty())


def fit(cfg, resume=False, log=print):
    """Train per ``cfg``; return the final state dict. With ``resume``, continue from the
    ``last`` checkpoint in ``cfg.TRAIN.out_dir`` (parameters, optimizer, epoch, iteration)."""
    ctx = devices(cfg.TRAIN.devices)
    distributed = cfg.TRAIN.kvstore.startswith("dist")
    kvstore = mx.kv.create(cfg.TRAIN.kvstore) if distributed else cfg.TRAIN.kvstore
    rank, workers = (kvstore.rank, kvstore.num_workers) if distributed else (0, 1)
    chief = rank == 0
    out_dir = cfg.TRAIN.out_dir
    train_data = train_batches(cfg, len(ctx), part=rank, parts=workers)
    val_data = val_batches(cfg, len(ctx))
    if train_data.classes not in (None, cfg.MODEL.classes):
        log(f"warning: the data has {train_data.classes} classes, MODEL.classes is "
            f"{cfg.MODEL.classes}")

    mx.random.seed(cfg.TRAIN.seed)
    np.random.seed(cfg.TRAIN.seed)
    net = build_network(cfg)
    _initialize(net, cfg, ctx)
    state = dict(epoch=0, batch=0, iteration=0, best_top1=0.0, interrupted=None)
    if not resume and os.path.exists(os.path.join(out_dir, "last.json")):
        raise TrainingError(f"{out_dir} already holds a run: continue it with --resume or "
                            f"choose another TRAIN.out_dir")
    manifest = checkpoint.load_manifest(out_dir) if resume else None
    if manifest:
        checkpoint.load_params(net, checkpoint.read_params(manifest["params"]), ctx,
                               manifest["params"])
        state.update(manifest["state"], interrupted=None)
    trainer, schedule = _trainer(net, cfg, len(train_data), kvstore, state["iteration"])
    if manifest:
        if manifest["states"]:
            trainer.load_states(manifest["states"])
        log(f"resumed from {out_dir} at epoch {state['epoch']}, batch {state['batch']}, "
            f"iteration {state['iteration']}"
            + ("" if manifest["states"] else " (optimizer momentum restarts)"))
    if chief:
        os.makedirs(out_dir, exist_ok=True)
        dump(cfg, os.path.join(out_dir, "config.yaml"))
    net.hybridize(static_alloc=True, static_shape=True)
    config = cfg.to_dict()

    def save(tags):
        if chief:  # a distributed optimizer's state lives on the servers: not saved
            checkpoint.save(out_dir, tags, net, None if distributed else trainer,
                            dict(state), config)

    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    optim, classes = cfg.OPTIM, cfg.MODEL.classes
    metrics_path = os.path.join(out_dir, "metrics.jsonl")
    stop = _StopRequest()
    try:
        while state["epoch"] < optim.epochs:
            epoch = state["epoch"]
            use_mixup = optim.mixup_alpha > 0 and epoch < optim.epochs - optim.mixup_off_epochs
            seen, loss_sum, correct, started = 0, 0.0, 0, time.time()
            bar = _progress(len(train_data) - state["batch"], epoch, not chief)
            for data, label in train_data.epoch(epoch, cfg.TRAIN.seed, skip=state["batch"]):
                targets = smooth_one_hot(label.asnumpy(), classes, optim.label_smoothing)
                images = data
                if use_mixup:
                    lam = float(np.random.beta(optim.mixup_alpha, optim.mixup_alpha))
                    images, targets = mixup(data, mx.nd.array(targets), lam)
                targets = mx.nd.array(targets) if isinstance(targets, np.ndarray) else targets
                xs = gluon.utils.split_and_load(images.astype(optim.dtype), ctx)
                ts = gluon.utils.split_and_load(targets.astype(optim.dtype), ctx)
                with autograd.record():
                    outs = [net(x) for x in xs]
                    losses = [loss_fn(o, t) for o, t in zip(outs, ts)]
                autograd.backward(losses)
                trainer.step(data.shape[0])
                batch_loss = sum(float(l.sum().asscalar()) for l in losses)
                if not math.isfinite(batch_loss):
                    raise TrainingError(
                        f"loss is {batch_loss} at epoch {epoch}, iteration {state['iteration']}"
                        f" (LR {schedule(state['iteration']):.4g}); stopped, the last good "
                        f"checkpoint in {out_dir} is kept")
                predictions = np.concatenate([o.argmax(axis=1).asnumpy() for o in outs])
                correct += int((predictions == label.asnumpy()).sum())
                seen += data.shape[0]
                loss_sum += batch_loss
                state["batch"] += 1
                state["iteration"] += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                                lr=f"{schedule(state['iteration']):.3g}",
                                ips=f"{seen / (time.time() - started):.0f}")
                if stop.signal:
                    break
            bar.close()
            if stop.signal:
                state["interrupted"] = stop.signal
                save(["last"])
                log(f"{stop.signal}: saved {out_dir}/last.json at epoch {epoch}, batch "
                    f"{state['batch']}; resume with --resume")
                return state
            top1, top5, _ = evaluate(net, val_data, ctx, optim.dtype)
            elapsed = time.time() - started
            record = dict(epoch=epoch + 1, iteration=state["iteration"],
                          lr=schedule(state["iteration"]), train_loss=loss_sum / max(seen, 1),
                          train_acc=correct / max(seen, 1), val_top1=top1, val_top5=top5,
                          images_per_sec=seen * workers / elapsed, seconds=elapsed)
            state.update(epoch=epoch + 1, batch=0)
            tags = ["last"]
            if top1 > state["best_top1"]:
                state["best_top1"] = top1
                tags.append("best")
            if (epoch + 1) % cfg.TRAIN.save_every == 0:
                tags.append(f"epoch{epoch + 1:04d}")
            save(tags)
            if chief:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                log(f"epoch {epoch + 1}/{optim.epochs}: loss {record['train_loss']:.4f} "
                    f"train-acc {record['train_acc']:.4f} val top-1 {top1:.4f} top-5 "
                    f"{top5:.4f} lr {record['lr']:.4g} {record['images_per_sec']:.0f} img/s")
    finally:
        stop.restore()
    if chief:
        plot_curves(metrics_path, os.path.join(out_dir, "curves.png"))
    log(f"done: best val top-1 {state['best_top1']:.4f}; rank {rank} parameters digest "
        f"{params_digest(net)}")
    return state


def plot_curves(metrics_path, png_path):
    """Loss, accuracy and LR against epochs, from the metrics log, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in open(metrics_path)]
    epochs = [r["epoch"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [r["train_loss"] for r in records])
    axes[0].set_title("train loss")
    for key in ("train_acc", "val_top1", "val_top5"):
        axes[1].plot(epochs, [r[key] for r in records], label=key)
    axes[1].set_title("accuracy")
    axes[1].legend()
    axes[2].plot(epochs, [r["lr"] for r in records])
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = png_path + ".tmp.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png_path)
