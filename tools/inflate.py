#!/usr/bin/env python
"""Inflate an image checkpoint of resnet50_v1b into a video network of the same alpha
(the "ImageNet pretrain" of the paper's Table 6).

    python tools/inflate.py runs/r50 --video i3d_resnet50 --out runs/i3d-from-r50
    python tools/inflate.py r50.params --alpha 0.1 --video c2d_resnet50 --mode center \\
        --out runs/c2d

The image checkpoint is a run folder or manifest of train_imagenet.py (or of
tools/convert_release.py), or a bare .params file of resnet50_v1b with --alpha and
--classes. Writes a checkpoint folder (last.json) of the video network that score.py
takes; see octconv/inflate.py for the two inflation modes.
"""
import sys

from octconv.cli import ArgumentParser, command, output_folder, positive_int
from octconv.inflate import INFLATION_MODES
from octconv.specs import VideoResNet, get_spec, model_names

# the video networks named as resnet50_v1b (SlowFast's two pathways are not)
VIDEO_NETWORKS = [n for n in model_names() if isinstance(get_spec(n).arch, VideoResNet)]


def inflate_checkpoint(source, video, mode, out_dir, alpha=None, classes=None):
    """Inflate the image checkpoint ``source`` into ``video``; the manifest path."""
    import os

    import mxnet as mx

    from octconv import checkpoint
    from octconv.config import from_dict
    from octconv.inflate import inflate
    from octconv.models import build_network

    if os.path.isdir(source) or source.endswith(".json"):
        manifest = checkpoint.load_manifest(source)
        model = manifest["config"]["MODEL"]
        if model["name"] != "resnet50_v1b":
            raise ValueError(f"{source} holds {model['name']}; inflation takes resnet50_v1b")
        alpha, classes = model["alpha"], model["classes"]
        data = manifest["config"].get("DATA", {})
        params = checkpoint.read_params(manifest["params"])
    else:
        if alpha is None or classes is None:
            raise ValueError(f"{source} is a bare parameter file: give --alpha and --classes")
        data, params = {}, checkpoint.read_params(source)
    recipe = {k: data[k] for k in ("mean", "std", "crop_ratio", "interp") if k in data}
    cfg = from_dict({"MODEL": dict(name=video, alpha=alpha, classes=classes), "DATA": recipe},
                    source=source)
    net = build_network(cfg)
    net.initialize(mx.init.MSRAPrelu())  # (every layer is declared with its input width)
    video_params = net.collect_params()
    inflated = inflate({k: v.asnumpy() for k, v in params.items()},
                       {k: p.shape for k, p in video_params.items()}, mode)
    for name, value in inflated.items():
        video_params[name].set_data(mx.nd.array(value))
    return checkpoint.save_converted(out_dir, net, cfg.to_dict(), inflated_from=source,
                                     inflation=mode)


@command
def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("checkpoint", help="run folder, manifest or .params of resnet50_v1b")
    parser.add_argument("--video", required=True, choices=VIDEO_NETWORKS)
    parser.add_argument("--mode", choices=INFLATION_MODES, default="mean")
    parser.add_argument("--alpha", type=float, help="for a bare .params file")
    parser.add_argument("--classes", type=positive_int, help="for a bare .params file")
    parser.add_argument("--out", required=True, help="the checkpoint folder to write")
    args = parser.parse_args(argv)
    output_folder(args.out, "--out")
    print(inflate_checkpoint(args.checkpoint, args.video, args.mode, args.out, args.alpha,
                             args.classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
