"""Checkpoints that survive a kill at any moment.

A checkpoint is a JSON manifest (``last.json``, ``best.json``, ``epoch0010.json``) naming
a parameter file (``ckpt-e0003-i0000123.params``: every parameter by name, loadable by
both APIs), an optimizer-state file (``.states``) and holding the run state (epoch,
batch, iteration, best accuracy) and the resolved config. Every file is written to a
temporary name and renamed into place, data first, manifest last: a reader always sees
a complete checkpoint, the previous one until the new one is whole. Data files no
manifest names any more, and temporary files of a writer that was killed, are removed at
each save.
"""
import glob
import json
import os

import mxnet as mx

from octconv.cli import UserError, mxnet_reason
from octconv.files import write_atomically

__all__ = ["CheckpointError", "save", "start_state", "save_converted", "load_manifest",
           "read_params", "load_params", "load_states", "trained_model"]


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, incomplete or does not fit the network."""


def save(out_dir, tags, net, trainer, state, config):
    """Write one checkpoint under every manifest name in ``tags`` (e.g. ``["last"]``).
    ``trainer`` None: no optimizer state (it lives on distributed servers)."""
    os.makedirs(out_dir, exist_ok=True)
    stem = f"ckpt-e{state['epoch']:04d}-i{state['iteration']:07d}"
    params, states = f"{stem}.params", None
    write_atomically(os.path.join(out_dir, params),
                     lambda p: mx.nd.save(p, {name: param.data().as_in_context(mx.cpu())
                                              for name, param in net.collect_params().items()}))
    if trainer is not None:
        states = f"{stem}.states"
        write_atomically(os.path.join(out_dir, states), trainer.save_states)
    manifest = dict(params=params, states=states, state=state, config=config)
    for tag in tags:
        write_atomically(os.path.join(out_dir, f"{tag}.json"),
                         lambda p: json.dump(manifest, open(p, "w"), indent=1))
    _remove_unreferenced(out_dir)


def start_state(**origin):
    """The state of a run that has not trained yet (``origin``: where its weights came
    from, if elsewhere): epoch, batch and iteration 0, best top-1 0 (the first epoch's
    score replaces it, whatever it is), not interrupted."""
    return dict(epoch=0, batch=0, iteration=0, best_top1=0.0, interrupted=None, **origin)


def save_converted(out_dir, net, config, **origin):
    """Write ``net`` (weights from elsewhere: a release file, an inflated image network)
    as the ``last`` checkpoint of a run that has not trained, with ``config`` (a dict)
    and ``origin`` in its state; return the manifest's path."""
    save(out_dir, ["last"], net, None, start_state(**origin), config)
    return f"{out_dir}/last.json"


def _remove_unreferenced(out_dir):
    referenced = set()
    for path in glob.glob(os.path.join(out_dir, "*.json")):
        try:
            manifest = json.load(open(path))
            referenced.update((manifest["params"], manifest["states"]))
            referenced.discard(None)
        except (ValueError, KeyError, TypeError):
            continue
    for path in glob.glob(os.path.join(out_dir, "ckpt-*")):
        if os.path.basename(path) not in referenced:
            os.remove(path)


def load_manifest(path):
    """The manifest at ``path`` (a ``.json`` file, or a run folder: its ``last.json``)."""
    if os.path.isdir(path):
        path = os.path.join(path, "last.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        manifest = json.load(open(path))
        folder = os.path.dirname(os.path.abspath(path))
        for key in ("params", "states"):
            manifest[key] = manifest[key] and os.path.join(folder, manifest[key])
        manifest["state"], manifest["config"]
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} is not a checkpoint manifest ({err})") from None
    if not os.path.isfile(manifest["params"]):
        raise CheckpointError(f"{path} names {manifest['params']}, which is missing")
    return manifest


def read_params(path):
    """``{name: NDArray}`` from a parameter file (``arg:``/``aux:`` prefixes dropped)."""
    try:
        saved = mx.nd.load(path)
    except mx.base.MXNetError as err:
        raise CheckpointError(f"cannot read parameters from {path}: "
                              f"{mxnet_reason(err)}") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} holds unnamed arrays, not named parameters")
    return {k.split(":", 1)[-1]: v for k, v in saved.items()}


def load_states(trainer, path):
    """Load the optimizer state file ``path`` into ``trainer``; CheckpointError if it
    cannot be read."""
    try:
        trainer.load_states(path)
    except Exception as err:  # a truncated or foreign file fails inside pickle or MXNet
        reason = mxnet_reason(err) if isinstance(err, mx.base.MXNetError) else err
        raise CheckpointError(f"cannot read the optimizer state {path}: {reason}") from None


def trained_model(path):
    """``(network, {name: NDArray})`` of the checkpoint at ``path`` (a run folder or
    manifest): the keyword arguments ``name``, ``alpha``, ``classes`` and ``exchange``
    of :func:`octconv.export.logits_symbol` that rebuild its network, and its parameters."""
    manifest = load_manifest(path)
    model = manifest["config"]["MODEL"]
    network = {key: model[key] for key in ("name", "alpha", "classes")}
    if "exchange" in model:  # (runs older than the switch have both paths)
        network["exchange"] = tuple(model["exchange"])
    return network, read_params(manifest["params"])


def load_params(net, saved, ctx, source="checkpoint"):
    """Load ``saved`` (``{name: NDArray}``) into ``net`` by name; CheckpointError naming
    the first missing, unexpected or mismatching parameter (with both shapes)."""
    params = net.collect_params()
    for name, param in params.items():
        if name not in saved:
            raise CheckpointError(f"{source}: parameter {name} {param.shape} is missing")
        known = param.shape is not None and all(param.shape)  # SymbolBlocks infer later
        if known and tuple(saved[name].shape) != tuple(param.shape):
            raise CheckpointError(f"{source}: parameter {name} has shape "
                                  f"{tuple(saved[name].shape)} in the file, "
                                  f"{tuple(param.shape)} in the network")
    extra = sorted(set(saved) - set(params))
    if extra:
        raise CheckpointError(f"{source}: parameter {extra[0]} {tuple(saved[extra[0]].shape)} "
                              f"is not in the network ({len(extra)} unexpected in all)")
    params.load_dict(saved, ctx)
