#!/usr/bin/env python
"""Train an Oct-network from a config file.

    python train_imagenet.py --config configs/resnet50_v2_a0.5.yaml
    python train_imagenet.py --config configs/demo_digits.yaml OPTIM.epochs 3 TRAIN.devices 0,1
    python train_imagenet.py --config configs/demo_digits.yaml --resume

Everything is in the config (see octconv/config.py for every key and its default);
``KEY VALUE`` pairs after the options override it. The resolved config, checkpoints
(last, best, every TRAIN.save_every epochs), metrics.jsonl and curves.png go to
TRAIN.out_dir. Ctrl-C saves a resumable checkpoint and exits.
"""
import os
import sys

from octconv.cli import ArgumentParser, command
from octconv.config import VIDEO_KINDS, load


@command
def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("--config", help="YAML file of overrides (configs/*.yaml)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint in TRAIN.out_dir")
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE",
                        help="config overrides, e.g. OPTIM.lr 0.2")
    args = parser.parse_intermixed_args(argv)  # --resume may come among the pairs
    cfg = load(args.config, args.overrides)
    if "mxnet" not in sys.modules:  # MXNet reads these when it starts
        if cfg.TRAIN.deterministic:
            os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
        if cfg.DATA.kind in VIDEO_KINDS and cfg.TRAIN.devices == "cpu":
            os.environ.setdefault("MXNET_MKLDNN_ENABLED", "0")  # README, known limits
            os.environ.setdefault("MXNET_STORAGE_FALLBACK_LOG_VERBOSE", "0")  # its notices
    from octconv.train import fit
    state = fit(cfg, resume=args.resume)
    return 130 if state.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
