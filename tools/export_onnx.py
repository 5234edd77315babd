#!/usr/bin/env python
"""Export a zoo network to ONNX, with trained weights or random ones.

    python tools/export_onnx.py --model resnet50_v2 --alpha 0.25 --out r50.onnx
    python tools/export_onnx.py --checkpoint runs/demo --out demo.onnx --size 32
    python tools/export_onnx.py --model resnet50_v2 --alpha 0.25 --params r50.params --out r50.onnx
    python tools/export_onnx.py --model i3d_resnet50 --alpha 0.1 --frames 8 --out i3d.onnx
    python tools/export_onnx.py --model resnet50_v2 --alpha 0.5 --dynamic-batch --out r50.onnx
    python tools/export_onnx.py --model resnet50_v2 --alpha 0.5 --size 224x320 --out r50.onnx

Every weight is checked against the shape the network needs: a parameter file of
another network or alpha is refused, naming the parameter.
"""
import sys

import mxnet as mx

from octconv.cli import (ArgumentParser, add_network_arguments, check_network_arguments,
                         chosen_network, command, output_path, positive_int)
from octconv.export import export_onnx, logits_symbol
from octconv.specs import get_spec


@command
def main(argv=None):
    parser = ArgumentParser(__doc__)
    add_network_arguments(parser)
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="leave the batch axis free: one file for any batch")
    parser.add_argument("--frames", type=positive_int,
                        help="clip length of a video network (default: the one Table 6 counts)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    args = parser.parse_args(argv)
    check_network_arguments(parser, args)
    if args.dynamic_batch and args.batch != 1:
        parser.error("--dynamic-batch leaves the batch free; drop --batch")
    output_path(args.out, "--out")
    network, params = chosen_network(args)
    sym = logits_symbol(**network)
    if params is None:
        from octconv.gluon import get_model
        net = get_model(**network)
        net.initialize(mx.init.MSRAPrelu())
        params = {k: p.data() for k, p in net.collect_params().items()}
    spec = get_spec(network["name"])
    if args.frames and spec.dims == 2:
        parser.error(f"--frames is for video networks; {network['name']} takes images")
    frames = (args.frames or spec.arch.frames) if spec.dims == 3 else None
    print(export_onnx(sym, params, args.out, args.size, args.batch, frames,
                      args.dynamic_batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
