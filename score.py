#!/usr/bin/env python
"""Score a checkpoint on a validation set: center crop, top-1 / top-5, images/s.

    python score.py runs/demo --data runs/digits/val            # a run of train_imagenet.py
    python score.py model.params --model resnet50_v2 --alpha 0.5 --data val.rec \\
        --sizes 224,256,288,320
    python score.py release/resnet50-symbol.json --data val.rec --preset release-symbol
    python score.py runs/moving_digits_i3d --data runs/moving_digits/val --clips 5
    python score.py runs/demo --data runs/digits/val --library runs/demo/model.so

The data is a RecordIO file (.rec with its .idx) or a folder with one sub-folder per
class (videos: .npy files, each scored by the mean of --clips windows). A run folder
(its latest checkpoint, last.json) or a manifest (best.json: the best epoch's) brings
its network and data recipe; a bare .params file needs --model and --alpha; a Symbol
checkpoint brings its own graph. ``--library`` also scores a library compiled from the
checkpoint with TVM (tools/tvm_compile.py --out) on the same images, at the size it was
compiled for, on all cores: a row for each backend.
"""
import json
import os
import sys

from octconv.cli import (ArgumentParser, add_checkpoint_arguments, command, output_path,
                         positive_int, size_list)
from octconv.config import VIDEO_KINDS
from octconv.files import write_atomically
from octconv.scoring import PRESETS, CompiledLibrary, load_for_scoring, score
from octconv.models import devices


@command
def main(argv=None):
    parser = ArgumentParser(__doc__)
    add_checkpoint_arguments(parser, "run folder, manifest .json, .params or -symbol.json")
    parser.add_argument("--sizes", type=size_list, default=None,
                        help="test sizes, e.g. 224,256,288,320 (default: the trained size)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="mean / std / resize recipe (default: the checkpoint's own)")
    parser.add_argument("--clips", type=positive_int,
                        help="video networks: clips per video (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=positive_int, default=50)
    parser.add_argument("--devices", default="cpu", help="cpu, or GPU ids such as 0,1")
    parser.add_argument("--library", metavar="PATH",
                        help="also score this TVM library compiled from the checkpoint")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.json:
        output_path(args.json, "--json")
    ctx = devices(args.devices)
    net, config = load_for_scoring(args.checkpoint, args.model, args.alpha, args.classes, ctx)
    data_cfg = config.get("DATA", {})
    video = data_cfg.get("kind") in VIDEO_KINDS
    kind = "rec" if args.data.endswith(".rec") else "clips" if video else "folder"
    sizes = args.sizes or [data_cfg.get("size", 224)]
    networks = {"mxnet": net}
    if args.library:
        if video:
            parser.error("--library: compiled libraries take images, and this network "
                         "takes clips")
        networks["tvm"] = CompiledLibrary(args.library)
        networks["tvm"].check_computes(net, ctx[0])
        size = networks["tvm"].size
        if args.sizes and args.sizes != [size]:
            parser.error(f"--library {args.library} takes {size} px images; drop --sizes "
                         f"or give --sizes {size}")
        sizes = [size]
    column = f"{'backend':>8} " if args.library else ""
    print(f"{column}{'size':>6} {'top-1':>8} {'top-5':>8} {'images':>8} {'img/s':>8}")
    results = []
    for backend, network in networks.items():
        column = f"{backend:>8} " if args.library else ""
        results += [dict(r, backend=backend) for r in score(
            network, args.data, kind, sizes, args.preset, data_cfg, args.batch_size, ctx,
            progress=lambda r: print(f"{column}{r['size']:>6} {r['top1']:>8.4f} "
                                     f"{r['top5']:>8.4f} {r['images']:>8} "
                                     f"{r['images_per_sec']:>8.1f}", flush=True),
            clips=args.clips)]
    if args.json:
        result = dict(checkpoint=os.path.abspath(args.checkpoint), data=args.data,
                      preset=args.preset, results=results)
        write_atomically(args.json, lambda tmp: json.dump(result, open(tmp, "w"), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
