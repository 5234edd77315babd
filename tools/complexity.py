#!/usr/bin/env python
"""Parameters, multiply-adds and the paper's FLOPs figure of OctConv networks.

Multiply-adds count convolutions and fully-connected layers; the paper's figure adds
what the FLOPs tool its release credits counts (see octconv.complexity.paper_flops).

    python tools/complexity.py                      # Table 1 and the zoo table
    python tools/complexity.py --table1             # Table 1 only
    python tools/complexity.py --zoo [--json]       # every network, paper figures beside
    python tools/complexity.py --api gluon --model resnet50_v2 --alpha 0.25 --size 224 --json
    python tools/complexity.py --model resnet50_v2 --alpha 0.5 --size 224x320   # height x width
    python tools/complexity.py --model resnet50_v2 --alpha 0.5 --exchange l2h  # no H->L
"""
import json
import sys

from octconv.cli import ArgumentParser, add_size_argument, command, exchange_paths
from octconv.complexity import count_model, paper_flops, table1
from octconv.paper import PAPER_FIGURES, VIDEO_FIGURES
from octconv.specs import get_spec, model_names, sides_text


def format_table1(rows):
    lines = ["Table 1: one 3x3 OctConv layer, 256 channels at 56x56, relative to alpha 0",
             "", "| alpha | FLOPs | memory |", "|---:|---:|---:|"]
    lines += [f"| {a:g} | {f:.1%} | {m:.1%} |" for a, f, m in rows]
    return "\n".join(lines)


def zoo_rows(size):
    """One dict per (network, alpha) of the zoo table: alpha 0, every alpha the paper
    reports, and 0.25 for networks the paper does not report (video networks: one clip
    of the frames the paper counts)."""
    printed = {**PAPER_FIGURES, **{key: ("Table 6", None, gflops, "G")
                                   for key, gflops in VIDEO_FIGURES.items()}}
    for name in model_names():
        alphas = {a for n, a in printed if n == name} or {0.25}
        for alpha in sorted(alphas | {0.0}):
            c = count_model(name, alpha, "symbol", size, get_spec(name).paper_classes)
            paper = printed.get((name, alpha))
            yield dict(model=name, alpha=alpha, size=size, params=c.params, macs=c.macs,
                       tool_flops=paper_flops(name, alpha, size),
                       paper=dict(table=paper[0], params_m=paper[1], flops=paper[2],
                                  unit=paper[3]) if paper else None)


def format_zoo(rows, size):
    lines = [f"| network | alpha | params | MACs at {sides_text(size)} | FLOPs, paper's tool | "
             "paper (params / FLOPs) |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        p = r["paper"]
        params = f"{p['params_m']} M / " if p and p["params_m"] else ""
        cited = f"{p['table']}: {params}{p['flops']} {p['unit']}" if p else ""
        lines.append(f"| {r['model']} | {r['alpha']:g} | {r['params'] / 1e6:.2f} M | "
                     f"{r['macs'] / 1e9:.3f} G | {r['tool_flops'] / 1e9:.3f} G | {cited} |")
    return "\n".join(lines)


@command
def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("--model", choices=model_names(), metavar="NAME",
                        help="one network: " + ", ".join(model_names()))
    parser.add_argument("--api", choices=("symbol", "gluon"), default="symbol")
    parser.add_argument("--alpha", type=float, default=0.0)
    add_size_argument(parser)
    parser.add_argument("--exchange", type=exchange_paths, default=("h2l", "l2h"),
                        help="exchange paths kept by --model's inner layers: h2l,l2h "
                             "(default), h2l, l2h or none")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--table1", action="store_true", help="only the paper's Table 1")
    parser.add_argument("--zoo", action="store_true", help="only the zoo table")
    args = parser.parse_args(argv)
    if args.model:
        c = count_model(args.model, args.alpha, args.api, args.size, exchange=args.exchange)
        result = dict(model=args.model, api=args.api, alpha=args.alpha, size=args.size,
                      exchange=list(args.exchange), params=c.params, macs=c.macs)
        print(json.dumps(result) if args.json else
              f"{args.model} alpha {args.alpha:g} ({args.api}): {c.params:,} parameters, "
              f"{c.macs:,} multiply-adds at {sides_text(args.size)}")
        return 0
    if args.zoo:
        rows = list(zoo_rows(args.size))
        print(json.dumps(rows) if args.json else format_zoo(rows, args.size))
        return 0
    table = table1()
    if args.json:
        print(json.dumps([dict(alpha=a, flops=f, memory=m) for a, f, m in table]))
        return 0
    print(format_table1(table))
    if not args.table1:
        print()
        print(format_zoo(zoo_rows(args.size), args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
