"""One config schema for training and scoring.

Every default lives here with a comment; a YAML file holds only overrides; ``KEY VALUE``
pairs on the command line override both (``OPTIM.lr 0.4``, values parsed as YAML).
Unknown keys, wrong types and values outside their choices raise :class:`ConfigError`
naming the key. The result is frozen; :func:`dump` writes it beside the checkpoints.
Recipe facts: docs/ARCHITECTURES.md section 4 (the original release's script).
"""
import copy
import os

import yaml

from octconv.cli import UserError
from octconv.files import write_atomically

__all__ = ["ConfigError", "Config", "DEFAULTS", "CHOICES", "load", "from_dict", "dump"]


class ConfigError(UserError, ValueError):
    """A config file or override that does not fit the schema."""


VIDEO_KINDS = ("clips", "moving_digits")  # DATA.kind values that give clips


DEFAULTS = {
    "MODEL": {
        "name": "resnet50_v2",        # a name of octconv.gluon.list_models()
        "alpha": 0.0,                 # low-frequency share, [0, 1)
        "api": "gluon",               # build with the gluon or the symbol API
        "classes": 1000,
        "dropout": 0.0,               # before the classifier
        "last_gamma": False,          # zero-init gamma of the last BN of residual branches
        "exchange": ["h2l", "l2h"],   # exchange paths kept in inner OctConv layers (ablation)
    },
    "DATA": {
        "kind": "rec",                # rec: RecordIO files; folder: class folders; digits: the
                                      # demo's set; digits_clutter: its harder variant;
                                      # clips: class folders of .npy videos; moving_digits:
                                      # the embedded video set
        "train": "",                  # .rec file or folder (digits: built here if missing)
        "val": "",
        "size": 224,                  # train crop and test size
        "crop_ratio": 0.875,          # test: resize shorter side to ceil(size / crop_ratio)
        "interp": "bilinear",         # test resize: bilinear, or bicubic (the Symbol release)
        "batch_size": 32,             # per device
        "workers": 4,                 # decoding threads / processes
        "mean": [123.68, 116.779, 103.939],  # RGB, 0-255 units
        "std": [58.393, 57.12, 57.375],
        "min_area": 0.08,             # random-resized crop area range [min_area, 1]
        "jitter": 0.4,                # brightness / contrast / saturation
        "lighting": 0.1,              # PCA lighting noise
        "frames": 8,                  # videos: frames of a clip
        "test_clips": 1,              # videos: clips per video at test, predictions averaged
    },
    "OPTIM": {
        "optimizer": "nag",           # nag (Nesterov) or sgd
        "lr": 0.1,                    # base LR for the global batch
        "momentum": 0.9,
        "wd": 1e-4,
        "no_wd": False,               # no weight decay on BN gamma/beta and biases
        "epochs": 120,
        "lr_mode": "cosine",          # cosine or step
        "warmup_epochs": 0,           # linear warm-up from warmup_lr to lr
        "warmup_lr": 0.0,
        "step_epochs": [40, 60],      # step mode: decay points
        "step_factor": 0.1,
        "label_smoothing": 0.0,       # eta; the release used 0.1 when on
        "mixup_alpha": 0.0,           # Beta(alpha, alpha) mixup, 0 = off; the release used 0.2
        "mixup_off_epochs": 0,        # last epochs without mixup
        "dtype": "float32",           # float16 trains with multi_precision
    },
    "TRAIN": {
        "devices": "cpu",             # cpu, or GPU ids such as "0,1"
        "kvstore": "device",          # local, device, dist_sync, dist_device_sync
        "seed": 0,
        "deterministic": False,       # identical runs for a seed: MXNet's NaiveEngine (slower)
        "out_dir": "runs/train",
        "save_every": 10,             # epochs between numbered checkpoints (last/best always)
    },
}

CHOICES = {
    "MODEL.api": ("gluon", "symbol"),
    "DATA.kind": ("rec", "folder", "digits", "digits_clutter", "clips", "moving_digits"),
    "DATA.interp": ("bilinear", "bicubic"),
    "OPTIM.optimizer": ("nag", "sgd"),
    "OPTIM.lr_mode": ("cosine", "step"),
    "OPTIM.dtype": ("float32", "float16"),
    "TRAIN.kvstore": ("local", "device", "dist_sync", "dist_device_sync"),
}


class Config:
    """Frozen nested config: ``cfg.OPTIM.lr``; ``cfg.to_dict()`` for a plain copy."""

    def __init__(self, tree):
        for key, value in tree.items():
            object.__setattr__(self, key, Config(value) if isinstance(value, dict) else
                               tuple(value) if isinstance(value, list) else value)

    def __setattr__(self, key, value):
        raise AttributeError(f"config is frozen (tried to set {key})")

    def to_dict(self):
        return {k: v.to_dict() if isinstance(v, Config) else list(v) if isinstance(v, tuple)
                else v for k, v in vars(self).items()}


def _check_value(path, value, default):
    if path in CHOICES and value not in CHOICES[path]:
        raise ConfigError(f"{path}: {value!r} is not one of {', '.join(CHOICES[path])}")
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, type(default[0])) or
                                             isinstance(v, (int, float)) for v in value)
    else:
        ok = isinstance(value, type(default)) and not isinstance(value, bool)
    if not ok:
        raise ConfigError(f"{path}: expected {type(default).__name__}, got {value!r}")
    return value


def _merge(tree, overrides, source, prefix=""):
    if not isinstance(overrides, dict):
        raise ConfigError(f"{source}: expected a mapping at {prefix or 'top level'}, "
                          f"got {overrides!r}")
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        if key not in tree:
            raise ConfigError(f"{source}: unknown key {path}; valid keys here: "
                              f"{', '.join(sorted(tree))}")
        if isinstance(tree[key], dict):
            _merge(tree[key], value, source, path + ".")
        else:
            tree[key] = _check_value(path, value, tree[key])


def _validate(tree):
    from octconv.specs import model_names
    from octconv.unit import check_alpha, check_exchange
    if tree["MODEL"]["name"] not in model_names():
        raise ConfigError(f"MODEL.name: unknown network {tree['MODEL']['name']!r}; choose one "
                          f"of: {', '.join(model_names())}")
    try:
        check_alpha(tree["MODEL"]["alpha"], "MODEL.alpha")
        check_exchange(tree["MODEL"]["exchange"], "MODEL.exchange")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    optim = tree["OPTIM"]
    if optim["warmup_epochs"] >= optim["epochs"]:
        raise ConfigError(f"OPTIM.warmup_epochs ({optim['warmup_epochs']}) must be below "
                          f"OPTIM.epochs ({optim['epochs']})")
    for path, value in (("DATA.frames", tree["DATA"]["frames"]),
                        ("DATA.test_clips", tree["DATA"]["test_clips"]),
                        ("OPTIM.lr", optim["lr"]), ("DATA.batch_size", tree["DATA"]["batch_size"]),
                        ("OPTIM.epochs", optim["epochs"]), ("DATA.size", tree["DATA"]["size"])):
        if value <= 0:
            raise ConfigError(f"{path} must be positive, got {value}")
    if not 0 <= optim["label_smoothing"] < 1:
        raise ConfigError(f"OPTIM.label_smoothing must be in [0, 1), got {optim['label_smoothing']}")
    if len(tree["DATA"]["mean"]) != 3 or len(tree["DATA"]["std"]) != 3:
        raise ConfigError("DATA.mean and DATA.std need three values (RGB)")


def _apply_overrides(tree, overrides):
    overrides = list(overrides)
    if len(overrides) % 2:
        raise ConfigError(f"overrides come as KEY VALUE pairs, got an odd count: {overrides}")
    for key, text in zip(overrides[::2], overrides[1::2]):
        *sections, leaf = key.split(".")
        nested = {leaf: yaml.safe_load(text) if isinstance(text, str) else text}
        for section in reversed(sections):
            nested = {section: nested}
        _merge(tree, nested, "command line")
    _validate(tree)
    return Config(tree)


def _check_data_fits_model(cfg):
    """A training config's data must be what its network takes: clips or images."""
    from octconv.specs import get_spec
    name, kind = cfg.MODEL.name, cfg.DATA.kind
    if (get_spec(name).dims == 3) != (kind in VIDEO_KINDS):
        takes = "clips" if get_spec(name).dims == 3 else "images"
        raise ConfigError(f"MODEL.name {name} takes {takes}; DATA.kind {kind!r} does not "
                          f"give them (kinds of clips: {', '.join(VIDEO_KINDS)})")
    return cfg


def load(path=None, overrides=()):
    """Defaults, then the YAML file at ``path``, then ``KEY VALUE`` ``overrides``; the
    data kind must fit the network (a training config)."""
    tree = copy.deepcopy(DEFAULTS)
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not a YAML text file (byte {err.start} is not "
                              f"UTF-8)") from None
        _merge(tree, data, path)
    return _check_data_fits_model(_apply_overrides(tree, overrides))


def from_dict(data, overrides=(), source="config"):
    """Defaults, then the nested mapping ``data`` (e.g. a checkpoint's), then overrides."""
    tree = copy.deepcopy(DEFAULTS)
    _merge(tree, data, source)
    return _apply_overrides(tree, overrides)


def dump(cfg, path):
    """Write ``cfg`` as YAML to ``path`` atomically."""
    def write(tmp):
        with open(tmp, "w") as f:
            yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
    write_atomically(path, write)
