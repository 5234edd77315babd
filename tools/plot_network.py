#!/usr/bin/env python
"""A picture of a zoo network: a layer-by-layer text summary with output shapes and
parameter counts, or with ``--out`` a graphviz drawing (needs graphviz's ``dot`` program).

    python tools/plot_network.py --model resnet26_v2 --alpha 0.25              # text
    python tools/plot_network.py --model resnet26_v2 --alpha 0.25 --out net.pdf
    python tools/plot_network.py --model i3d_resnet50 --alpha 0.25 --size 224x320
"""
import os
import shutil
import sys

import mxnet as mx

from octconv.cli import ArgumentParser, add_size_argument, command, output_path
from octconv.specs import get_spec, model_names
from octconv.symbol import get_symbol


@command
def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("--model", required=True, choices=model_names(), metavar="NAME",
                        help="one of: " + ", ".join(model_names()))
    parser.add_argument("--alpha", type=float, default=0.0)
    add_size_argument(parser, "; a video network takes clips of the frames the paper counts")
    parser.add_argument("--out", help="drawing to write (.pdf, .png or .svg); needs graphviz")
    args = parser.parse_args(argv)
    sym = get_symbol(args.model, alpha=args.alpha)
    shape = {"data": get_spec(args.model).input_shape(args.size)}
    if args.out:
        if shutil.which("dot") is None:
            parser.error("--out needs graphviz's 'dot' program (apt-get install graphviz); "
                         "without --out a text summary is printed")
        stem, ext = os.path.splitext(args.out)
        if ext not in (".pdf", ".png", ".svg"):
            parser.error(f"--out must end in .pdf, .png or .svg, got {args.out!r}")
        output_path(args.out, "--out")
        dot = mx.viz.plot_network(sym, shape=shape, save_format=ext[1:],
                                  node_attrs={"fixedsize": "false"})
        print(dot.render(stem, cleanup=True))
    else:
        mx.viz.print_summary(sym, shape=shape, line_length=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
