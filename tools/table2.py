#!/usr/bin/env python
"""The paper's Table 2 (ResNet-50, alpha 0 to .75) and Table 3 MobileNets, timed on
this CPU, single thread, with TVM beside MXNet (oneDNN) and ONNX Runtime.

    python tools/table2.py                      # writes results/table2.{md,csv,png}
    python tools/table2.py --only resnet --runs 20

Every row is timed on all three backends in one interleaved run (median of --runs
after a warm-up) on random weights of the right scale; its vanilla twin's TVM library
runs in the same loop, so the speed-up over the twin is measured side by side.
"Vanilla" networks are GluonCV's (true strided convolutions, what a user would
otherwise deploy); the MobileNet v2 1.125 twin is this zoo's alpha-0 network (GluonCV
has none). Speed-up is TVM time of the vanilla twin over TVM time of the row; the MACs
ratio is the twin's multiply-adds over the row's.
"""
import argparse
import os
import platform
import sys
import time

os.environ["OMP_NUM_THREADS"] = "1"  # single thread, before MXNet and TVM start
os.environ["TVM_NUM_THREADS"] = "1"

# (group, row label, source, name, alpha, vanilla twin label)
ROWS = [
    ("resnet", "vanilla ResNet-50", "gluoncv", "resnet50_v2", None, None),
    ("resnet", "Oct-ResNet-50 alpha=0", "zoo", "resnet50_v2", 0.0, "vanilla ResNet-50"),
    ("resnet", "Oct-ResNet-50 alpha=.125", "zoo", "resnet50_v2", 0.125, "vanilla ResNet-50"),
    ("resnet", "Oct-ResNet-50 alpha=.25", "zoo", "resnet50_v2", 0.25, "vanilla ResNet-50"),
    ("resnet", "Oct-ResNet-50 alpha=.5", "zoo", "resnet50_v2", 0.5, "vanilla ResNet-50"),
    ("resnet", "Oct-ResNet-50 alpha=.75", "zoo", "resnet50_v2", 0.75, "vanilla ResNet-50"),
    ("mobilenet", "vanilla MobileNet v1 0.75", "gluoncv", "mobilenet0.75", None, None),
    ("mobilenet", "Oct-MobileNet v1 0.75 alpha=.375", "zoo", "mobilenet_v1_075", 0.375,
     "vanilla MobileNet v1 0.75"),
    ("mobilenet", "vanilla MobileNet v1 1.0", "gluoncv", "mobilenet1.0", None, None),
    ("mobilenet", "Oct-MobileNet v1 1.0 alpha=.5", "zoo", "mobilenet_v1_100", 0.5,
     "vanilla MobileNet v1 1.0"),
    ("mobilenet", "vanilla MobileNet v2 1.0", "gluoncv", "mobilenetv2_1.0", None, None),
    ("mobilenet", "Oct-MobileNet v2 1.0 alpha=.375", "zoo", "mobilenet_v2_100", 0.375,
     "vanilla MobileNet v2 1.0"),
    ("mobilenet", "MobileNet v2 1.125 alpha=0", "zoo", "mobilenet_v2_1125", 0.0, None),
    ("mobilenet", "Oct-MobileNet v2 1.125 alpha=.5", "zoo", "mobilenet_v2_1125", 0.5,
     "MobileNet v2 1.125 alpha=0"),
]
# The paper's Table 2 (ms, one 2.0 GHz Skylake thread): TVM per alpha, MKLDNN 119 ms.
PAPER_TVM_MS = {"Oct-ResNet-50 alpha=0": 115, "Oct-ResNet-50 alpha=.125": 116,
                "Oct-ResNet-50 alpha=.25": 99, "Oct-ResNet-50 alpha=.5": 74,
                "Oct-ResNet-50 alpha=.75": 61}
COLUMNS = ["network", "macs_m", "tvm_ms", "mxnet_ms", "onnxruntime_ms", "tvm_vs_mxnet",
           "tvm_vs_onnxruntime", "speedup", "macs_ratio", "speedup_over_macs_ratio",
           "paper_tvm_ms", "max_diff"]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions():
    from importlib.metadata import version
    return {p: version(p) for p in ("mxnet", "apache-tvm", "onnxruntime", "numpy")}


def measure(rows, args, cache, target):
    from octconv.deploy.bench import gluoncv_network, time_backends, zoo_network
    def build(label):
        _, _, source, name, alpha, _ = next(r for r in ROWS if r[1] == label)
        return gluoncv_network(name) if source == "gluoncv" else zoo_network(name, alpha)

    results = {}
    for _, label, _, _, _, twin in rows:
        network = build(label)
        start = time.perf_counter()
        timed = time_backends(network, 224, runs=args.runs, target=target, cache=cache,
                              budget=args.budget, twin=build(twin) if twin else None)
        timed["macs"] = network.macs(224)
        timed["wall_s"] = time.perf_counter() - start
        results[label] = timed
        ms = timed["ms"]
        print(f"{label:36s} {timed['macs'] / 1e6:7.0f} M  tvm {ms['tvm']:7.1f}  mxnet "
              f"{ms['mxnet']:7.1f}  onnxruntime {ms['onnxruntime']:7.1f} ms  "
              f"({timed['wall_s']:.0f} s, {timed['tvm']['searches']} searches)", flush=True)
    return results


def table(rows, results):
    out = []
    for _, label, _, _, _, twin in rows:
        r = results[label]
        ms = r["ms"]
        row = {"network": label, "macs_m": r["macs"] / 1e6, "tvm_ms": ms["tvm"],
               "mxnet_ms": ms["mxnet"], "onnxruntime_ms": ms["onnxruntime"],
               "tvm_vs_mxnet": ms["tvm"] / ms["mxnet"],
               "tvm_vs_onnxruntime": ms["tvm"] / ms["onnxruntime"],
               "speedup": None, "macs_ratio": None, "speedup_over_macs_ratio": None,
               "paper_tvm_ms": PAPER_TVM_MS.get(label),
               "max_diff": r["max_diff"]["tvm"] / max(r["scale"], 1e-12)}
        if twin:
            row["speedup"] = ms["tvm_twin"] / ms["tvm"]
            row["macs_ratio"] = results[twin]["macs"] / r["macs"]
            row["speedup_over_macs_ratio"] = row["speedup"] / row["macs_ratio"]
        out.append(row)
    return out


def verdicts(rows):
    """The issue's targets, each with the figure reached."""
    by = {r["network"]: r for r in rows}
    checks = []
    if "vanilla ResNet-50" in by:
        v = by["vanilla ResNet-50"]
        checks.append(("TVM vanilla ResNet-50 <= 0.9 x oneDNN and <= 0.9 x ONNX Runtime",
                       v["tvm_vs_mxnet"] <= 0.9 and v["tvm_vs_onnxruntime"] <= 0.9,
                       f"{v['tvm_vs_mxnet']:.2f} x oneDNN, {v['tvm_vs_onnxruntime']:.2f} x "
                       "ONNX Runtime"))
    octs = [r for r in rows if r["network"].startswith("Oct-ResNet") and r["macs_ratio"]]
    if octs:
        worst = min(octs, key=lambda r: r["speedup_over_macs_ratio"])
        checks.append(("Oct-ResNet-50 speed-up >= 0.95 x MACs ratio at every alpha",
                       worst["speedup_over_macs_ratio"] >= 0.95,
                       f"lowest {worst['speedup_over_macs_ratio']:.2f} ({worst['network']})"))
    oct_rows = [r for r in rows if r["network"].startswith("Oct-")]
    slow = [r["network"] for r in oct_rows
            if r["tvm_vs_mxnet"] >= 1 or r["tvm_vs_onnxruntime"] >= 1]
    checks.append(("every Oct network faster in TVM than in oneDNN and ONNX Runtime",
                   not slow, "all faster" if not slow else "not: " + ", ".join(slow)))
    mobile = [r for r in oct_rows if "MobileNet" in r["network"] and r["speedup"]]
    if mobile:
        slow = [r["network"] for r in mobile if r["speedup"] <= 1]
        checks.append(("Oct-MobileNets faster than their vanilla width twins (TVM)", not slow,
                       "all faster" if not slow else "not: " + ", ".join(slow)))
    return checks


def _fmt(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


def write(rows, checks, meta, out_dir):
    import csv
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "table2.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# Table 2 / Table 3 timing: TVM vs MXNet (oneDNN) vs ONNX Runtime", "",
             "Written by `tools/table2.py`; single thread, batch 1, 224 x 224, median of "
             f"{meta['runs']} interleaved runs per backend after a warm-up.", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", "| network | MMACs | TVM ms | oneDNN ms | ORT ms | TVM/oneDNN | TVM/ORT | "
              "speed-up | MACs ratio | speed-up / MACs ratio | paper TVM ms |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['macs_m']:.0f} | {r['tvm_ms']:.1f} | {r['mxnet_ms']:.1f} "
            f"| {r['onnxruntime_ms']:.1f} | {_fmt(r['tvm_vs_mxnet'])} | "
            f"{_fmt(r['tvm_vs_onnxruntime'])} | {_fmt(r['speedup'])} | {_fmt(r['macs_ratio'])} "
            f"| {_fmt(r['speedup_over_macs_ratio'])} | {r['paper_tvm_ms'] or ''} |")
    lines += ["", "## Targets", ""]
    lines += [f"- [{'x' if ok else ' '}] {what}: {figure}" for what, ok, figure in checks]
    lines += ["", "![timings](table2.png)", ""]
    with open(os.path.join(out_dir, "table2.md"), "w") as f:
        f.write("\n".join(lines))
    _chart(rows, os.path.join(out_dir, "table2.png"))


def _chart(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(11, 5))
    x = np.arange(len(rows))
    for k, (key, name) in enumerate((("tvm_ms", "TVM"), ("mxnet_ms", "MXNet oneDNN"),
                                     ("onnxruntime_ms", "ONNX Runtime"))):
        ax.bar(x + (k - 1) * 0.27, [r[key] for r in rows], 0.27, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels([r["network"] for r in rows], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("ms per image, single thread")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("resnet", "mobilenet"))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--budget", type=int, default=4,
                        help="register tiles tried per new convolution workload")
    parser.add_argument("--cache", default=None, help="the tuning cache file")
    parser.add_argument("--out-dir", default="results")
    args = parser.parse_args(argv)
    if args.runs < 10:
        parser.error("--runs must be at least 10 (the median of at least 10 runs)")
    from octconv.deploy.target import describe, make_target
    from octconv.deploy.tuning import TileCache
    rows = [r for r in ROWS if args.only in (None, r[0])]
    target = make_target()
    cache = TileCache(args.cache)
    cached_before = sum(len(v) for v in cache.records.values())
    start = time.perf_counter()
    results = measure(rows, args, cache, target)
    wall = time.perf_counter() - start
    table_rows = table(rows, results)
    meta = {"CPU": cpu_model(), "TVM target": describe(target),
            "versions": ", ".join(f"{k} {v}" for k, v in versions().items()),
            "runs": args.runs, "search budget": f"{args.budget} tiles per workload",
            "tuning cache at start": f"{cached_before} records",
            "searches run": sum(r["tvm"]["searches"] for r in results.values()),
            "wall time": f"{wall:.0f} s (compile, tuning and timing)"}
    checks = verdicts(table_rows)
    write(table_rows, checks, meta, args.out_dir)
    for what, ok, figure in checks:
        print(f"[{'x' if ok else ' '}] {what}: {figure}")
    print(f"wrote {os.path.join(args.out_dir, 'table2.md')} (.csv, .png) in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
