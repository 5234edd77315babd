#!/usr/bin/env python
"""Turn a parameter file of the original release into a checkpoint of this project.

    python tools/convert_release.py resnet152_v1f_alpha-0.125.params \\
        --model resnet152_v1f --alpha 0.125 --out runs/release-r152f
    python tools/convert_release.py a03_resnet-50_alpha-0.500/resnet-50-0100.params \\
        --model resnet50_v2 --alpha 0.5 --out runs/release-r50

Reads the release's Gluon files (as its training script saved them, or by parameter
name) and its Symbol ``prefix-NNNN.params``; see octconv/release.py. Writes a folder
like a train_imagenet.py run: ``last.json`` naming the converted parameters, with the
network and the test recipe the release used (Symbol checkpoints: bicubic resize and
their own mean / scale; Gluon: GluonCV's), so score.py, tools/export_onnx.py and
tools/tvm_compile.py take it by its path alone.
"""
import sys

import mxnet as mx

from octconv import checkpoint
from octconv.cli import ArgumentParser, command, output_folder, positive_int
from octconv.config import from_dict
from octconv.release import RELEASE, ReleaseNameError, from_release, release_format
from octconv.scoring import PRESETS
from octconv.models import build_network


def convert(path, model, alpha, classes, out_dir):
    """Convert the release file ``path`` for ``model`` at ``alpha``; the manifest path."""
    if model not in RELEASE:
        raise ReleaseNameError(f"the release published no {model!r}; its networks: "
                               f"{', '.join(sorted(RELEASE))}")
    recipe = dict(PRESETS["release-symbol" if RELEASE[model][0] == "symbol" else "imagenet"])
    cfg = from_dict({"MODEL": dict(name=model, alpha=alpha, classes=classes), "DATA": recipe},
                    source=path)
    net = build_network(cfg)
    expected = {name: p.shape for name, p in net.collect_params().items()}
    saved = checkpoint.read_params(path)
    if release_format(saved, model) is None:
        raise ReleaseNameError(f"{path} is in none of the release's layouts for {model} "
                               f"(first name {next(iter(saved), 'none')!r})")
    params = {k: mx.nd.array(v) for k, v in from_release(saved, model, expected).items()}
    net.initialize()
    checkpoint.load_params(net, params, [mx.cpu()], path)
    return checkpoint.save_converted(out_dir, net, cfg.to_dict(), converted_from=path)


@command
def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("params", help="the release's .params file")
    parser.add_argument("--model", required=True, help="this project's name of the network")
    parser.add_argument("--alpha", type=float, required=True)
    parser.add_argument("--classes", type=positive_int, default=1000)
    parser.add_argument("--out", required=True, help="the checkpoint folder to write")
    args = parser.parse_args(argv)
    output_folder(args.out, "--out")
    print(convert(args.params, args.model, args.alpha, args.classes, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
