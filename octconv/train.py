"""Training: a network from the zoo, a config, one or many devices or machines.

``fit(cfg, resume)`` runs the release's recipe (docs/ARCHITECTURES.md 4.1): NAG
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
from octconv.cli import UserError, output_folder
from octconv.config import VIDEO_KINDS, dump
from octconv.data import train_batches, val_batches
from octconv.figures import pyplot, save_png
from octconv.models import build_network, devices, evaluate
from octconv.schedule import WarmupSchedule
from octconv.targets import mixup, smooth_one_hot

__all__ = ["TrainingError", "fit", "mixup_weight", "params_digest"]


class TrainingError(UserError, RuntimeError):
    """A run that cannot go on (NaN loss, devices that do not exist, an existing run)."""


def _initialize(net, cfg, ctx):
    net.initialize(mx.init.MSRAPrelu(), ctx=ctx)
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


class _Run:
    """One training run: its devices, data, network, optimizer and progress ``state``
    (epoch, batch within it, iteration, best top-1, what interrupted it)."""

    def __init__(self, cfg, resume, log):
        self.cfg, self.log = cfg, log
        try:
            self.ctx = devices(cfg.TRAIN.devices)
        except ValueError as err:
            raise TrainingError(f"TRAIN.{err}") from None
        self.distributed = cfg.TRAIN.kvstore.startswith("dist")
        kvstore = mx.kv.create(cfg.TRAIN.kvstore) if self.distributed else cfg.TRAIN.kvstore
        self.rank, self.workers = ((kvstore.rank, kvstore.num_workers) if self.distributed
                                   else (0, 1))
        self.chief = self.rank == 0
        self.out_dir = out_dir = output_folder(cfg.TRAIN.out_dir, "TRAIN.out_dir")
        self.train_data = train_batches(cfg, len(self.ctx), part=self.rank, parts=self.workers)
        self.val_data = val_batches(cfg, len(self.ctx))
        if self.train_data.classes not in (None, cfg.MODEL.classes):
            log(f"warning: the data has {self.train_data.classes} classes, MODEL.classes is "
                f"{cfg.MODEL.classes}")

        mx.random.seed(cfg.TRAIN.seed)
        np.random.seed(cfg.TRAIN.seed)
        try:
            self.net = build_network(cfg)
        except ValueError as err:  # an option the network cannot take (last_gamma)
            raise TrainingError(f"MODEL.{err}") from None
        _initialize(self.net, cfg, self.ctx)
        self.state = checkpoint.start_state()
        if not resume and os.path.exists(os.path.join(out_dir, "last.json")):
            raise TrainingError(f"{out_dir} already holds a run: continue it with --resume or "
                                f"choose another TRAIN.out_dir")
        manifest = checkpoint.load_manifest(out_dir) if resume else None
        if manifest:
            checkpoint.load_params(self.net, checkpoint.read_params(manifest["params"]),
                                   self.ctx, manifest["params"])
            self.state.update(manifest["state"], interrupted=None)
        self.trainer, self.schedule = _trainer(self.net, cfg, len(self.train_data), kvstore,
                                               self.state["iteration"])
        if manifest:
            if manifest["states"]:
                checkpoint.load_states(self.trainer, manifest["states"])
            log(f"resumed from {out_dir} at epoch {self.state['epoch']}, batch "
                f"{self.state['batch']}, iteration {self.state['iteration']}"
                + ("" if manifest["states"] else " (optimizer momentum restarts)"))
        if self.chief:
            os.makedirs(out_dir, exist_ok=True)
            dump(cfg, os.path.join(out_dir, "config.yaml"))
        self.net.hybridize(static_alloc=True, static_shape=True)
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
        self.metrics_path = os.path.join(out_dir, "metrics.jsonl")

    def save(self, tags):
        """Checkpoint under ``tags`` (rank 0 only). A distributed optimizer's state lives
        on the kvstore servers and is not saved."""
        if self.chief:
            checkpoint.save(self.out_dir, tags, self.net,
                            None if self.distributed else self.trainer, dict(self.state),
                            self.cfg.to_dict())

    def step(self, data, label, use_mixup):
        """One optimizer step on a batch -> (summed loss, correct predictions).
        Targets: smoothed one-hot, mixed with a Beta(a, a) weight when ``use_mixup``
        (drawn by :func:`mixup_weight` for this batch)."""
        optim = self.cfg.OPTIM
        targets = smooth_one_hot(label.asnumpy(), self.cfg.MODEL.classes, optim.label_smoothing)
        images = data
        if use_mixup:
            lam = mixup_weight(optim.mixup_alpha, self.cfg.TRAIN.seed, self.state["epoch"],
                               self.state["batch"])
            images, targets = mixup(data, mx.nd.array(targets), lam)
        targets = mx.nd.array(targets) if isinstance(targets, np.ndarray) else targets
        xs = gluon.utils.split_and_load(images.astype(optim.dtype), self.ctx)
        ts = gluon.utils.split_and_load(targets.astype(optim.dtype), self.ctx)
        with autograd.record():
            outs = [self.net(x) for x in xs]
            losses = [self.loss_fn(o, t) for o, t in zip(outs, ts)]
        autograd.backward(losses)
        self.trainer.step(data.shape[0])
        batch_loss = sum(float(l.sum().asscalar()) for l in losses)
        if not math.isfinite(batch_loss):
            raise TrainingError(
                f"loss is {batch_loss} at epoch {self.state['epoch']}, iteration "
                f"{self.state['iteration']} (LR {self.schedule(self.state['iteration']):.4g}); "
                f"stopped, the last good checkpoint in {self.out_dir} is kept")
        predictions = np.concatenate([o.argmax(axis=1).asnumpy() for o in outs])
        return batch_loss, int((predictions == label.asnumpy()).sum())

    def train_epoch(self, stop):
        """The rest of the current epoch, from ``state["batch"]``; leaves early after the
        batch during which ``stop`` was signalled. -> images seen, loss sum, correct, start."""
        optim, epoch = self.cfg.OPTIM, self.state["epoch"]
        use_mixup = optim.mixup_alpha > 0 and epoch < optim.epochs - optim.mixup_off_epochs
        seen, loss_sum, correct, started = 0, 0.0, 0, time.time()
        bar = _progress(len(self.train_data) - self.state["batch"], epoch, not self.chief)
        for data, label in self.train_data.epoch(epoch, self.cfg.TRAIN.seed,
                                                 skip=self.state["batch"]):
            batch_loss, batch_correct = self.step(data, label, use_mixup)
            seen += data.shape[0]
            loss_sum += batch_loss
            correct += batch_correct
            self.state["batch"] += 1
            self.state["iteration"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                            lr=f"{self.schedule(self.state['iteration']):.3g}",
                            ips=f"{seen / (time.time() - started):.0f}")
            if stop.signal:
                break
        bar.close()
        return seen, loss_sum, correct, started

    def end_epoch(self, seen, loss_sum, correct, started):
        """Validate, advance to the next epoch, checkpoint (last; best: the first epoch,
        then each that beats it; every ``save_every``), append to metrics.jsonl and log a
        line."""
        optim, epoch = self.cfg.OPTIM, self.state["epoch"]
        top1, top5, _ = evaluate(self.net, self.val_data, self.ctx, optim.dtype)
        elapsed = time.time() - started
        record = dict(epoch=epoch + 1, iteration=self.state["iteration"],
                      lr=self.schedule(self.state["iteration"]),
                      train_loss=loss_sum / max(seen, 1), train_acc=correct / max(seen, 1),
                      val_top1=top1, val_top5=top5,
                      images_per_sec=seen * self.workers / elapsed, seconds=elapsed)
        self.state.update(epoch=epoch + 1, batch=0)
        tags = ["last"]
        if epoch == 0 or top1 > self.state["best_top1"]:  # (the first is the best so far)
            self.state["best_top1"] = top1
            tags.append("best")
        if (epoch + 1) % self.cfg.TRAIN.save_every == 0:
            tags.append(f"epoch{epoch + 1:04d}")
        self.save(tags)
        if self.chief:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            self.log(f"epoch {epoch + 1}/{optim.epochs}: loss {record['train_loss']:.4f} "
                     f"train-acc {record['train_acc']:.4f} val top-1 {top1:.4f} top-5 "
                     f"{top5:.4f} lr {record['lr']:.4g} {record['images_per_sec']:.0f} img/s")


def mixup_weight(alpha, seed, epoch, batch):
    """The Beta(alpha, alpha) mixup weight of one batch, from a generator of its own
    keyed by (seed, epoch, batch): the same in a resumed run, whatever else drew."""
    return float(np.random.RandomState([seed, epoch, batch]).beta(alpha, alpha))


def fit(cfg, resume=False, log=print):
    """Train per ``cfg``; return the final state dict. With ``resume``, continue from the
    ``last`` checkpoint in ``cfg.TRAIN.out_dir`` (parameters, optimizer, epoch, iteration).
    SIGINT / SIGTERM save ``last`` after the current batch and return."""
    if cfg.TRAIN.deterministic and os.environ.get("MXNET_ENGINE_TYPE") != "NaiveEngine":
        log("warning: TRAIN.deterministic needs MXNET_ENGINE_TYPE=NaiveEngine set before "
            "MXNet starts (train_imagenet.py sets it); this run may not repeat exactly")
    if (cfg.DATA.kind in VIDEO_KINDS and cfg.TRAIN.devices == "cpu"
            and os.environ.get("MXNET_MKLDNN_ENABLED") != "0"):
        raise TrainingError("video networks train on CPU only with MXNET_MKLDNN_ENABLED=0 "
                            "set before MXNet starts (train_imagenet.py sets it): MXNet "
                            "1.9's oneDNN backward of 3-D convolutions fails")
    run = _Run(cfg, resume, log)
    stop = _StopRequest()
    try:
        while run.state["epoch"] < cfg.OPTIM.epochs:
            progress = run.train_epoch(stop)
            if stop.signal:
                run.state["interrupted"] = stop.signal
                run.save(["last"])
                log(f"{stop.signal}: saved {run.out_dir}/last.json at epoch "
                    f"{run.state['epoch']}, batch {run.state['batch']}; resume with --resume")
                return run.state
            run.end_epoch(*progress)
    finally:
        stop.restore()
    if run.chief:
        plot_curves(run.metrics_path, os.path.join(run.out_dir, "curves.png"))
    saved = (f" ({os.path.join(run.out_dir, 'best.json')}; the latest: last.json)"
             if run.chief else "")  # (rank 0 writes the checkpoints)
    log(f"done: best val top-1 {run.state['best_top1']:.4f}{saved}; rank {run.rank} "
        f"parameters digest {params_digest(run.net)}")
    return run.state


def plot_curves(metrics_path, png_path):
    """Loss, accuracy and LR against epochs, from the metrics log, as a PNG."""
    records = [json.loads(line) for line in open(metrics_path)]
    epochs = [r["epoch"] for r in records]
    fig, axes = pyplot().subplots(1, 3, figsize=(13, 3.6))
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
    save_png(fig, png_path)
