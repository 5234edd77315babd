#!/usr/bin/env python
"""Parameters and multiply-adds (the paper's "FLOPs") of OctConv networks.

    python tools/complexity.py                      # Table 1 and the zoo table
    python tools/complexity.py --table1             # Table 1 only
    python tools/complexity.py --zoo                # every network, paper figures beside
    python tools/complexity.py --api gluon --model resnet50_v2 --alpha 0.25 --size 224 --json
"""
import argparse
import json
import sys

from octconv.complexity import count_model, table1
from octconv.paper import PAPER_FIGURES
from octconv.specs import model_names


def format_table1(rows):
    lines = ["Table 1: one 3x3 OctConv layer, 256 channels at 56x56, relative to alpha 0",
             "", "| alpha | FLOPs | memory |", "|---:|---:|---:|"]
    lines += [f"| {a:g} | {f:.1%} | {m:.1%} |" for a, f, m in rows]
    return "\n".join(lines)


def zoo_rows():
    """(name, alpha) pairs of the zoo table: alpha 0, every alpha the paper reports,
    and 0.25 for networks the paper does not report."""
    for name in model_names():
        alphas = {a for n, a in PAPER_FIGURES if n == name} or {0.25}
        for alpha in sorted(alphas | {0.0}):
            yield name, alpha


def format_zoo(size):
    lines = [f"| network | alpha | params | MACs at {size} | paper (params / FLOPs) |",
             "|---|---:|---:|---:|---|"]
    for name, alpha in zoo_rows():
        c = count_model(name, alpha, "symbol", size)
        paper = PAPER_FIGURES.get((name, alpha))
        cited = f"{paper[0]}: {paper[1]} M / {paper[2]} {paper[3]}" if paper else ""
        lines.append(f"| {name} | {alpha:g} | {c.params / 1e6:.2f} M | {c.macs / 1e9:.3f} G "
                     f"| {cited} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=model_names(), metavar="NAME",
                        help="one network: " + ", ".join(model_names()))
    parser.add_argument("--api", choices=("symbol", "gluon"), default="symbol")
    parser.add_argument("--alpha", type=float, default=0.0)
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--table1", action="store_true", help="only the paper's Table 1")
    parser.add_argument("--zoo", action="store_true", help="only the zoo table")
    args = parser.parse_args(argv)
    try:
        if args.model:
            c = count_model(args.model, args.alpha, args.api, args.size)
            result = dict(model=args.model, api=args.api, alpha=args.alpha, size=args.size,
                          params=c.params, macs=c.macs)
            print(json.dumps(result) if args.json else
                  f"{args.model} alpha {args.alpha:g} ({args.api}): {c.params:,} parameters, "
                  f"{c.macs:,} multiply-adds at {args.size}x{args.size}")
            return 0
    except ValueError as err:
        parser.error(str(err))
    if args.json:
        print(json.dumps([dict(alpha=a, flops=f, memory=m) for a, f, m in table1()]))
        return 0
    parts = []
    if not args.zoo:
        parts.append(format_table1(table1()))
    if not args.table1:
        parts.append(format_zoo(args.size))
    print("\n\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
