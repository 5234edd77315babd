#!/usr/bin/env python
"""Parameters and multiply-adds: the paper's Table 1 for one OctConv layer.

    python tools/complexity.py            # Table 1 (FLOPs and memory vs alpha)
    python tools/complexity.py --json     # the same as JSON
"""
import argparse
import json
import sys

from octconv.complexity import table1


def format_table1(rows):
    lines = ["Table 1: one 3x3 OctConv layer, 256 channels at 56x56, relative to alpha 0",
             "", "| alpha | FLOPs | memory |", "|---:|---:|---:|"]
    lines += [f"| {a:g} | {f:.1%} | {m:.1%} |" for a, f, m in rows]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = table1()
    if args.json:
        print(json.dumps([dict(alpha=a, flops=f, memory=m) for a, f, m in rows]))
    else:
        print(format_table1(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
