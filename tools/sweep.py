#!/usr/bin/env python
"""Train one network over alphas, seeds and exchange-path ablations; plot accuracy
against multiply-adds (the paper's Fig. 3) and the Oct-minus-baseline gain against the
test size (its testing at higher resolutions).

    python tools/sweep.py --config configs/findings_digits.yaml --out results/findings
    python tools/sweep.py --config configs/findings_digits.yaml --alphas 0,0.5 --seeds 0 \\
        --ablations none --sizes 32 --out /tmp/sweep OPTIM.epochs 1

Every run goes through the training code with its own config (the base config, the
KEY VALUE overrides, then MODEL.alpha, MODEL.exchange, TRAIN.seed and TRAIN.out_dir =
RUNS/<variant>_a<alpha>_s<seed>), and is scored by score.py's code on the validation
set at every --sizes. A finished run is not trained again and an interrupted one
resumes, so a stopped sweep continues where it was. Writes to --out: sweep.csv (one
row per run: variant, alpha, seed, params, MACs at the training size, top-1/top-5 at
the training size, training seconds), resolution.csv (top-1/top-5 per run and test
size), sweep.png and resolution.png.
"""
import csv
import json
import os
import sys
import time

from octconv.cli import ArgumentParser, command, output_folder, size_list
from octconv.figures import pyplot, save_png
from octconv.files import write_atomically

# the variants: the exchange paths their inner OctConv layers keep (paper, Appendix C)
VARIANTS = {"full": ("h2l", "l2h"), "no_h2l": ("l2h",), "no_l2h": ("h2l",)}


def one_alpha(text):
    """An argument type: an alpha in [0, 1)."""
    import argparse
    from octconv.unit import check_alpha
    try:
        return check_alpha(float(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None


def alpha_list(text):
    """An argument type: comma-separated alphas, each in [0, 1)."""
    return [one_alpha(part) for part in text.split(",")]


def int_list(text):
    """An argument type: comma-separated whole numbers (seeds)."""
    import argparse
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of whole numbers") from None


def ablation_list(text):
    """An argument type: ablated variants, comma-separated, or ``none``."""
    import argparse
    names = [] if text == "none" else text.split(",")
    unknown = [n for n in names if n not in VARIANTS or n == "full"]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown ablation {unknown[0]!r}; choose from "
                                         f"no_h2l, no_l2h or none")
    return names


def planned_runs(alphas, seeds, ablations, ablation_alpha):
    """``(variant, alpha, seed)`` of every run: the full network at each alpha, each
    ablation at ``ablation_alpha``; each for every seed."""
    runs = [("full", a, s) for a in alphas for s in seeds]
    return runs + [(v, ablation_alpha, s) for v in ablations for s in seeds]


def run_one(config, overrides, variant, alpha, seed, folder, sizes, log):
    """Train (or resume, or reuse) one run in ``folder`` and score it; its result dict
    is kept in ``folder/sweep.json``."""
    from octconv.complexity import count_model
    from octconv.config import load
    from octconv.data import data_path
    from octconv.scoring import load_for_scoring, score
    from octconv.train import fit

    result_path = os.path.join(folder, "sweep.json")
    if os.path.exists(result_path):
        return json.load(open(result_path))
    cfg = load(config, list(overrides) + [
        "MODEL.alpha", str(alpha), "MODEL.exchange", json.dumps(list(VARIANTS[variant])),
        "TRAIN.seed", str(seed), "TRAIN.out_dir", folder])
    started = time.time()
    state = fit(cfg, resume=os.path.exists(os.path.join(folder, "last.json")),
                log=lambda line: log(f"[{variant} alpha={alpha:g} seed={seed}] {line}"))
    if state.get("interrupted"):
        raise KeyboardInterrupt
    seconds = time.time() - started
    counts = count_model(cfg.MODEL.name, alpha, "gluon", cfg.DATA.size, cfg.MODEL.classes,
                         exchange=cfg.MODEL.exchange)
    net, run_config = load_for_scoring(folder)
    val = data_path(cfg, train=False)
    scores = score(net, val, "rec" if val.endswith(".rec") else "folder",
                   sorted(set(sizes) | {cfg.DATA.size}), data_cfg=run_config.get("DATA"))
    at_size = next(s for s in scores if s["size"] == cfg.DATA.size)
    result = dict(variant=variant, alpha=alpha, seed=seed, params=counts.params,
                  macs=counts.macs, size=cfg.DATA.size, top1=at_size["top1"],
                  top5=at_size["top5"], train_seconds=round(seconds, 1),
                  scores=[{k: s[k] for k in ("size", "top1", "top5")} for s in scores])
    write_atomically(result_path, lambda tmp: json.dump(result, open(tmp, "w"), indent=1))
    return result


def write_csvs(results, out):
    """sweep.csv and resolution.csv in ``out``."""
    fields = ["variant", "alpha", "seed", "params", "macs", "size", "top1", "top5",
              "train_seconds"]

    def table(path, header, rows):
        def write(tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(header)
                writer.writerows(rows)
        write_atomically(path, write)

    table(os.path.join(out, "sweep.csv"), fields, [[r[k] for k in fields] for r in results])
    table(os.path.join(out, "resolution.csv"), ["variant", "alpha", "seed", "size", "top1", "top5"],
          [[r["variant"], r["alpha"], r["seed"], s["size"], s["top1"], s["top5"]]
           for r in results for s in r["scores"]])


def _finish(fig, ax, xlabel, ylabel, title, path):
    """Labels, title, grid and legend of a one-axis figure, written to ``path``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    save_png(fig, path)


def _spread(values):
    return min(values), sum(values) / len(values), max(values)


def plot_sweep(results, path, title):
    """Top-1 against multiply-adds: mean over seeds with min-max bars; the full network
    as a line over alpha, each ablation as its own marker."""
    fig, ax = pyplot().subplots(figsize=(7, 5))
    for variant, marker in (("full", "o"), ("no_h2l", "s"), ("no_l2h", "^")):
        groups = {}
        for r in results:
            if r["variant"] == variant:
                groups.setdefault((r["macs"], r["alpha"]), []).append(100 * r["top1"])
        if not groups:
            continue
        keys = sorted(groups)
        low, mean, high = zip(*(_spread(groups[k]) for k in keys))
        x = [k[0] / 1e6 for k in keys]
        ax.errorbar(x, mean, yerr=[[m - lo for m, lo in zip(mean, low)],
                                   [hi - m for m, hi in zip(mean, high)]],
                    marker=marker, capsize=3, linestyle="-" if variant == "full" else "none",
                    label=variant if variant != "full" else "both exchange paths")
        for xi, yi, (_, alpha) in zip(x, mean, keys):
            ax.annotate(f"{alpha:g}", (xi, yi), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    _finish(fig, ax, "multiply-adds per image (M)",
            "validation top-1 (%), mean and min-max over seeds", title, path)


def resolution_gains(results):
    """``{alpha: {size: [top-1 gain over alpha 0 of the same seed, ...]}}`` of the full
    network (empty without alpha-0 runs)."""
    base = {(r["seed"], s["size"]): s["top1"] for r in results
            if r["variant"] == "full" and r["alpha"] == 0 for s in r["scores"]}
    gains = {}
    for r in results:
        if r["variant"] != "full" or r["alpha"] == 0:
            continue
        for s in r["scores"]:
            if (r["seed"], s["size"]) in base:
                gains.setdefault(r["alpha"], {}).setdefault(s["size"], []).append(
                    s["top1"] - base[(r["seed"], s["size"])])
    return gains


def plot_resolution(results, path, title):
    """Oct-minus-baseline top-1 against the test size, one line per alpha."""
    fig, ax = pyplot().subplots(figsize=(7, 5))
    for alpha, by_size in sorted(resolution_gains(results).items()):
        sizes = sorted(by_size)
        low, mean, high = zip(*(_spread([100 * g for g in by_size[s]]) for s in sizes))
        ax.plot(sizes, mean, marker="o", label=f"alpha {alpha:g}")
        ax.fill_between(sizes, low, high, alpha=0.15)
    ax.axhline(0, color="gray", linewidth=0.8)
    _finish(fig, ax, "test size (px)",
            "top-1 gain over alpha 0 (points), mean and min-max over seeds", title, path)


@command
def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("--config", required=True, help="base YAML (configs/findings_digits.yaml)")
    parser.add_argument("--alphas", type=alpha_list, default=[0.0, 0.125, 0.25, 0.5, 0.75])
    parser.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    parser.add_argument("--ablations", type=ablation_list, default=["no_h2l", "no_l2h"],
                        help="no_h2l,no_l2h (default), one of them, or none")
    parser.add_argument("--ablation-alpha", type=one_alpha, default=0.5,
                        help="alpha of the ablation runs (the paper's path ablation "
                             "used 0.5)")
    parser.add_argument("--sizes", type=size_list, default=None,
                        help="test sizes for the resolution study (default: the training "
                             "size and 0.75, 1.25, 1.5 times it)")
    parser.add_argument("--runs", default="runs/sweep", help="folder of the runs")
    parser.add_argument("--out", required=True, help="folder for the CSVs and PNGs")
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE",
                        help="config overrides for every run, e.g. OPTIM.epochs 5")
    args = parser.parse_intermixed_args(argv)
    from octconv.config import load
    base = load(args.config, args.overrides)  # a bad config fails before any training
    output_folder(args.out, "--out")
    output_folder(args.runs, "--runs")
    if base.TRAIN.deterministic and "mxnet" not in sys.modules:  # read when MXNet starts
        os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
    size = base.DATA.size
    sizes = args.sizes or [round(size * f) for f in (0.75, 1.0, 1.25, 1.5)]
    runs = planned_runs(args.alphas, args.seeds, args.ablations, args.ablation_alpha)
    results = []
    for k, (variant, alpha, seed) in enumerate(runs, 1):
        folder = os.path.join(args.runs, f"{variant}_a{alpha:g}_s{seed}")
        print(f"run {k}/{len(runs)}: {folder}", flush=True)
        results.append(run_one(args.config, args.overrides, variant, alpha, seed, folder,
                               sizes, log=lambda line: None))
        r = results[-1]
        print(f"  top-1 {r['top1']:.4f}  {r['macs'] / 1e6:.1f} M MACs  "
              f"{r['train_seconds']:.0f} s", flush=True)
    os.makedirs(args.out, exist_ok=True)
    write_csvs(results, args.out)
    title = (f"{base.MODEL.name} on {base.DATA.kind}, {base.OPTIM.epochs} epochs, "
             f"seeds {','.join(map(str, args.seeds))}")
    plot_sweep(results, os.path.join(args.out, "sweep.png"), title)
    if resolution_gains(results):
        plot_resolution(results, os.path.join(args.out, "resolution.png"), title)
    print(f"wrote {args.out}/sweep.csv, resolution.csv, sweep.png"
          + (", resolution.png" if resolution_gains(results) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
