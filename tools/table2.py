#!/usr/bin/env python
"""The paper's Table 2 (ResNet-50, alpha 0 to .75) and Table 3 MobileNets, timed on
this CPU with TVM beside MXNet (oneDNN), ONNX Runtime and OpenVINO.

    python tools/table2.py                      # writes results/table2.{md,csv,png}
    python tools/table2.py --only resnet --threads 1 --no-batch
    python tools/table2.py --after-idle --out-dir results/after_idle

Timing: every network of a group (ResNets, MobileNets) runs on all four backends in
one interleaved loop, one call of each per round, so each network has one time per
backend and the speed-up over a vanilla twin (another row of the group) is measured
side by side. Ten rounds are timed, then more in steps of five until every backend's
spread (interquartile range over the median) is below ``--tolerance`` or ``--max-runs``
is reached; rows still above it are marked noisy. After ten runs, a backend whose times
lie clearly above the network's fastest other backend's (its first quartile above that
one's third) is no longer timed, since no ratio a target judges uses it. Each ratio a
target judges (TVM over the fastest other backend, speed-up over MACs ratio, scaling)
carries a 95 % interval from resampling the rounds, and a target whose threshold falls
inside an interval is marked as within the noise, neither reached nor missed. Each
backend's turn in a round starts once the previous runtime's workers have stopped
spinning (they would take a core from it) with untimed calls for 40 ms
(:data:`~octconv.deploy.bench.WARM_SECONDS`), and the call after them is timed: it
finds what calls back to back find, as under steady load and as each runtime's own
benchmark tool times it. With ``--after-idle`` the first call after the wait is timed
instead: a request arriving at an idle process, which finds the previous runtime's data
in the caches and, on several threads, its own runtime's workers asleep, and on several
threads of a virtual machine pays for bringing a sleeping core back (a cost that varied
several-fold within an hour on this project's: results/NOTES.md, stop 48). Each thread
count runs in its own process (MXNet fixes its thread count when it starts); the
2-thread process also runs the TVM libraries on one thread, for the scaling ratio, and
beside them a compute-bound kernel on one thread and on two
(:mod:`octconv.deploy.scaling_check`), whose scaling in the same rounds tells how much
of two cores the machine gave, and passes of kernels on two threads that read what the
other core has written, or what their own has, whose ratio tells how slowly the machine
passed data between the cores. A few rows are timed again at batch 8 on the most
threads, in images per second.

"Vanilla" networks are GluonCV's (true strided convolutions, what a user would
otherwise deploy); the MobileNet v2 1.125 twin is this zoo's alpha-0 network (GluonCV
has none). Speed-up is TVM time of the vanilla twin over TVM time of the row; the MACs
ratio is the twin's multiply-adds over the row's. The speed-up / MACs ratio of each Oct
network is also given over this zoo's alpha-0 network of its architecture (a row of
the group: the twin's multiply-adds, but its strided layers pool, then convolve, as
the Oct networks' do), a second reference, so that a twin timed slow in one run does
not move a whole group's ratios unseen; the targets judge the twin's. Weights are
random, at a trained network's scale.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from octconv.cli import (ArgumentParser, add_after_idle_argument, child_processes, command,
                         output_folder, output_path, positive_int)

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
# the octave networks (alpha > 0): the rows the verdicts on Oct networks judge
OCT_ROWS = {label for _, label, _, _, alpha, _ in ROWS if alpha}
# each Oct network's alpha-0 network: the zoo's row of its architecture with alpha 0
ALPHA0 = {label: zero for _, label, _, name, alpha, _ in ROWS if alpha
          for _, zero, source, name0, alpha0, _ in ROWS
          if source == "zoo" and name0 == name and alpha0 == 0}
# timed again at batch 8 (images per second), on the most threads
BATCH_ROWS = ["vanilla ResNet-50", "Oct-ResNet-50 alpha=.5", "vanilla MobileNet v2 1.0",
              "Oct-MobileNet v2 1.0 alpha=.375"]
BATCH = 8
GROUPS = {"resnet": "ResNets", "mobilenet": "MobileNets"}  # as figures name them
SIZE = 224
OTHERS = ("mxnet", "onnxruntime", "openvino")
# The paper's Table 2 (ms, one 2.0 GHz Skylake thread): TVM per alpha, MKLDNN 119 ms.
PAPER_TVM_MS = {"Oct-ResNet-50 alpha=0": 115, "Oct-ResNet-50 alpha=.125": 116,
                "Oct-ResNet-50 alpha=.25": 99, "Oct-ResNet-50 alpha=.5": 74,
                "Oct-ResNet-50 alpha=.75": 61}
# the ratios the targets judge, and the speed-up / MACs ratio over the alpha-0 network;
# each has a bootstrap interval over the rounds (_low, _high)
RATIOS = ("tvm_vs_best_other", "speedup_over_macs_ratio", "scaling",
          "alpha0_speedup_over_macs_ratio")
COLUMNS = ["network", "threads", "batch", "macs_m", "tvm_ms", "mxnet_ms", "onnxruntime_ms",
           "openvino_ms", "tvm_spread", "worst_spread", "noisy", "images_per_s",
           "tvm_vs_best_other", "speedup", "macs_ratio", "speedup_over_macs_ratio",
           "alpha0_speedup_over_macs_ratio", "scaling", "paper_tvm_ms", "max_diff"] + [
           f"{ratio}_{end}" for ratio in RATIOS for end in ("low", "high")] + [
           f"{backend}_runs" for backend in ("tvm",) + OTHERS]


def versions():
    from importlib.metadata import version
    return {p: version(p) for p in ("mxnet", "apache-tvm", "onnxruntime", "openvino", "numpy")}


# ----------------------------------------------------------------------------- one process

def _network(label):
    from octconv.deploy.bench import gluoncv_network, zoo_network
    _, _, source, name, alpha, _ = next(r for r in ROWS if r[1] == label)
    return gluoncv_network(name, SIZE) if source == "gluoncv" else zoo_network(name, alpha,
                                                                               size=SIZE)


def time_group(networks, threads, batch, args, cache, target, scaling=False, size=SIZE):
    """``(results, check)``: ``results`` ``{label: {"ms": {backend: summary}, "times":
    {backend: [ms per round]}, "max_diff": {backend: relative difference from MXNet},
    "macs", "tvm"}}`` for ``networks`` ({label:
    :class:`~octconv.deploy.bench.Network`}) on ``batch`` images of ``size``, all timed
    in one interleaved loop (:func:`time_rounds`); with ``scaling`` each TVM library
    also runs on one thread (runner ``tvm_1``). On more than one thread the machine's
    checks (:mod:`octconv.deploy.scaling_check`) are timed in the same loop, beside the
    networks: ``check`` is ``{"ms", "times"}`` of their runners ``tvm``, ``tvm_1``,
    ``own`` and ``passed`` (None on one thread)."""
    from octconv.deploy.bench import (differences_from_mxnet, make_runners, random_input,
                                      summarize)
    from octconv.specs import images_shape
    x = random_input(images_shape(size, batch))
    runners, results, beside = {}, {}, {}
    if threads > 1:
        from octconv.deploy.scaling_check import scaling_check
        beside = {(CHECK, b): run for b, run in scaling_check(threads, target, cache).items()}
    for label, network in networks.items():
        start = time.perf_counter()
        mine = make_runners(network, x, threads=threads, target=target, cache=cache,
                            budget=args.budget)
        if scaling:
            mine["tvm_1"] = mine["tvm"].with_threads(1)
        results[label] = {"macs": network.macs(size), "tvm": mine["tvm"].compiled.stats,
                          "max_diff": differences_from_mxnet(mine)}
        runners.update({(label, b): run for b, run in mine.items()})
        stats = results[label]["tvm"]
        print(f"  {label}: ready in {time.perf_counter() - start:.0f} s ({stats['searches']} "
              f"searches, tuning {stats['tune_s']:.0f} s, library {stats['library']} in "
              f"{stats['build_s']:.0f} s)", flush=True)
    start = time.perf_counter()
    times = time_rounds(runners, args.tolerance, args.max_runs, beside,
                        not args.after_idle)
    stopped = sum(len(ms) < len(times[(label, "tvm")]) for (label, _), ms in times.items())
    print(f"  timed in {time.perf_counter() - start:.0f} s: "
          f"{max(len(ms) for ms in times.values())} rounds, {stopped} of {len(times)} "
          "runners stopped early", flush=True)
    check = {"ms": {}, "times": {}} if beside else None
    for (label, backend), ms in times.items():
        entry = check if label == CHECK else results[label]
        entry.setdefault("ms", {})[backend] = summarize(ms)
        entry.setdefault("times", {})[backend] = ms  # per round, for the intervals
    return results, check


CHECK = "scaling check"  # the label of the machine's checks' runners
STEP = 5  # runs added per round of checks
# runs before anything stops: the loop (a ratio of medians over 5 paired rounds has a wide
# interval: 1.02 [0.95-1.05] for a quiet group in results/NOTES.md, stop 63) and a
# backend clearly slower than the fastest other
SETTLE_RUNS = 10


def time_rounds(runners, tolerance, max_runs, beside=None, steady=True):
    """``{(label, backend): [ms, ...]}``: the runners of a group called in one
    interleaved loop (:func:`~octconv.deploy.bench.interleave`; ``steady``: each timed
    call after untimed ones of the same runner, else the first after the idle wait),
    :data:`STEP` runs at a time, until, after at least :data:`SETTLE_RUNS`, every runner
    still timed has a spread under ``tolerance``, or ``max_runs`` runs were taken. After
    each step the runners that no ratio a target judges needs stop (:func:`not_needed`):
    their lists end early, holding the same rounds as the first ones of the others'.
    The runners ``beside`` (the machine's scaling check) are called in every round,
    first, and neither stop nor prolong the loop."""
    from octconv.deploy.bench import interleave, summarize
    beside = beside or {}
    times = {key: [] for key in {**beside, **runners}}
    timed, warmup, runs = dict(runners), 2, 0
    while True:
        for key, ms in interleave({**beside, **timed}, STEP, warmup, steady).items():
            times[key] += ms
        warmup, runs = 0, runs + STEP
        for key in not_needed({key: times[key] for key in runners}):
            timed.pop(key, None)
        settled = runs >= SETTLE_RUNS and max(
            summarize(times[key])["spread"] for key in timed) < tolerance
        if settled or runs >= max_runs:
            return times


def not_needed(times):
    """The keys ``(label, backend)`` of other backends (:data:`OTHERS`) that no ratio a
    target judges uses: after :data:`SETTLE_RUNS` runs, a backend whose first quartile
    lies above the third quartile of the network's fastest other backend (by median).
    The ratios pair TVM with the fastest other, TVM with TVM: those keep running."""
    import numpy as np
    done = set()
    for label in {label for label, _ in times}:
        others = {b: times[(label, b)] for b in OTHERS if (label, b) in times}
        fastest = min(others, key=lambda b: np.median(others[b]))
        ceiling = np.percentile(others[fastest], 75)
        done |= {(label, b) for b, ms in others.items()
                 if len(ms) >= SETTLE_RUNS and np.percentile(ms, 25) > ceiling}
    return done


def worker(args):
    """Time every group at one thread count; write the results as JSON."""
    from octconv.deploy.target import make_target
    from octconv.deploy.tuning import TileCache
    target = make_target(args.target)
    cache = TileCache(args.cache)
    threads = args.worker
    out = {"threads": threads, "groups": {}, "batch": {}, "checks": {"groups": {}, "batch": {}}}
    for group in ("resnet", "mobilenet"):
        labels = [r[1] for r in ROWS if r[0] == group and args.only in (None, group)]
        if not labels:
            continue
        print(f"{group}, {threads} thread(s), batch 1:", flush=True)
        networks = {label: _network(label) for label in labels}
        out["groups"][group], check = time_group(networks, threads, 1, args, cache, target,
                                                 scaling=threads > 1)
        if check:
            out["checks"]["groups"][group] = check
        cache.save()
        batched = {label: networks[label] for label in labels if label in BATCH_ROWS}
        if args.batch_threads == threads and batched:
            print(f"{group}, {threads} thread(s), batch {BATCH}:", flush=True)
            out["batch"][group], check = time_group(batched, threads, BATCH, args, cache,
                                                    target)
            if check:
                out["checks"]["batch"][group] = check
    with open(args.json, "w") as f:
        json.dump(out, f)


# ----------------------------------------------------------------------------- the table

def _row(label, result, group_results, threads, batch, tolerance):
    """One CSV row. Each ratio a target judges is the ratio of two medians over the
    rounds both were timed in, with a 95 % interval from resampling those rounds of the
    interleaved loop (both times of a round together:
    :func:`~octconv.deploy.bench.median_ratio`). So where the fastest other backend
    stopped early (:func:`not_needed`), TVM over it pairs its rounds with TVM's first
    ones, not with TVM's median over all."""
    from octconv.deploy.bench import median_ratio, thread_scaling
    ms = {b: s["median"] for b, s in result["ms"].items()}
    times = result["times"]
    spreads = [s["spread"] for b, s in result["ms"].items() if b != "tvm_1"]
    twin = next(r[5] for r in ROWS if r[1] == label)
    fastest = min(OTHERS, key=ms.get)
    row = {"network": label, "threads": threads, "batch": batch, "macs_m": result["macs"] / 1e6,
           "tvm_ms": ms["tvm"], "mxnet_ms": ms["mxnet"], "onnxruntime_ms": ms["onnxruntime"],
           "openvino_ms": ms["openvino"], "tvm_spread": result["ms"]["tvm"]["spread"],
           "worst_spread": max(spreads), "noisy": max(spreads) >= tolerance,
           "images_per_s": 1e3 * batch / ms["tvm"], "tvm_vs_best_other": None,
           "speedup": None, "macs_ratio": None, "speedup_over_macs_ratio": None,
           "alpha0_speedup_over_macs_ratio": None, "scaling": None,
           "paper_tvm_ms": PAPER_TVM_MS.get(label) if threads == 1 and batch == 1 else None,
           "max_diff": max(result["max_diff"].values())}
    row.update({f"{ratio}_{end}": None for ratio in RATIOS for end in ("low", "high")})
    row.update({f"{backend}_runs": len(ms) for backend, ms in times.items() if backend != "tvm_1"})
    # the fastest other ran to the end unless it was overtaken after it stopped
    # (:func:`not_needed`): then the ratio and its interval pair the rounds it ran
    runs = len(times[fastest])
    row["tvm_vs_best_other"], (row["tvm_vs_best_other_low"], row["tvm_vs_best_other_high"]) = \
        median_ratio(times["tvm"][:runs], times[fastest])
    if "tvm_1" in times:
        scaled = thread_scaling(times["tvm_1"], times["tvm"])
        row["scaling"] = scaled["scaling"]
        row["scaling_low"], row["scaling_high"] = scaled["interval"]
    if twin and twin in group_results:
        row["speedup"], row["macs_ratio"] = _speedup_over_macs(
            group_results[twin], result, "speedup_over_macs_ratio", row)
    if ALPHA0.get(label) in group_results:
        _speedup_over_macs(group_results[ALPHA0[label]], result,
                           "alpha0_speedup_over_macs_ratio", row)
    return row


def check_figures(workers, part):
    """The machine's scaling check in each group of ``part`` ("groups" or "batch")
    timed on more than one thread (the workers' ``checks``): ``"<group> <scaling [95 %
    interval]> (spread <%> on <N> threads), reading another core's writes <ratio [95 %
    interval]> x as long as one's own; ..."``: the compute-bound kernel's 1 -> N thread
    scaling and the data-passing figure (:func:`octconv.deploy.scaling_check.figures`),
    or None when no group had them."""
    from octconv.deploy.bench import passing_text, thread_scaling_text
    from octconv.deploy.scaling_check import figures
    parts = []
    for out in workers:
        for group, check in out["checks"][part].items():
            machine = figures(check["times"])
            parts.append(f"{GROUPS[group]} "
                         f"{thread_scaling_text(machine['scaling'], out['threads'])}, "
                         f"{passing_text(machine['passing'])}")
    return "; ".join(parts) or None


def _speedup_over_macs(reference, result, key, row):
    """Set ``row[key]`` (and ``key_low``, ``key_high``) to TVM's speed-up of ``result``
    over ``reference`` (another network of the group) divided by their MACs ratio, with
    its 95 % interval; return the speed-up and the MACs ratio."""
    from octconv.deploy.bench import median_ratio
    speedup, (low, high) = median_ratio(reference["times"]["tvm"], result["times"]["tvm"])
    macs_ratio = reference["macs"] / result["macs"]
    row.update({key: speedup / macs_ratio, f"{key}_low": low / macs_ratio,
                f"{key}_high": high / macs_ratio})
    return speedup, macs_ratio


def table(workers, tolerance):
    """The CSV rows: every network at every thread count (batch 1), then the batch rows."""
    rows = []
    for part, batch in (("groups", 1), ("batch", BATCH)):
        for out in workers:
            for group_results in out[part].values():
                for label in [r[1] for r in ROWS if r[1] in group_results]:
                    rows.append(_row(label, group_results[label], group_results,
                                     out["threads"], batch, tolerance))
    return rows


def _judge(rows, ratio, threshold, at_least):
    """A target on ``ratio`` for every row of ``rows`` (>= ``threshold`` when
    ``at_least``, else <=), judged on each row's 95 % interval: True when every interval
    lies on the target's side, False when one lies wholly on the other, None when the
    noise decides (an interval straddles the threshold, none misses it wholly)."""
    intervals = [(r[f"{ratio}_low"], r[f"{ratio}_high"]) for r in rows]
    if at_least:
        missed = any(high < threshold for _, high in intervals)
        reached = all(low >= threshold for low, _ in intervals)
    else:
        missed = any(low > threshold for low, _ in intervals)
        reached = all(high <= threshold for _, high in intervals)
    return False if missed else True if reached else None


def _held(rows, ratio, threshold, at_least, named):
    """When the target is within the noise (:func:`_judge`), the rows but ``named`` (the
    worst by its ratio, which the verdict's figure names) whose 95 % interval holds
    ``threshold`` and so leave it there, as a suffix of the figure: ``"; within the
    noise: <row> <ratio [interval]>"``; else ""."""
    if _judge(rows, ratio, threshold, at_least) is not None:
        return ""
    held = [r for r in rows if r is not named and (
        r[f"{ratio}_low"] < threshold <= r[f"{ratio}_high"] if at_least
        else r[f"{ratio}_low"] <= threshold < r[f"{ratio}_high"])]
    return "".join(f"; within the noise: {r['network']} {_ranged(r, ratio)}" for r in held)


def _together(*verdicts):
    """Verdicts that must all hold: missed if one is missed, else within the noise if
    one is, else reached."""
    return False if False in verdicts else None if None in verdicts else True


def _ranged(row, ratio):
    """A ratio's cell: the figure and its interval in brackets (empty when not measured)."""
    if row[ratio] is None:
        return ""
    return f"{row[ratio]:.2f} [{row[f'{ratio}_low']:.2f}-{row[f'{ratio}_high']:.2f}]"


def _where(row):
    """A row's network, with its thread count and batch where they are not one."""
    settings = ([f"{row['threads']} threads"] if row["threads"] > 1 else []) + (
        [f"batch {row['batch']}"] if row["batch"] > 1 else [])
    return row["network"] + (f" ({', '.join(settings)})" if settings else "")


def _speedups(rows):
    """The rows' speed-ups over the vanilla twin, each with its 95 % interval (that of
    the speed-up / MACs ratio, times the MACs ratio)."""
    def ranged(r):
        low, high = (r[f"speedup_over_macs_ratio_{end}"] * r["macs_ratio"]
                     for end in ("low", "high"))
        return f"{_where(r)} {r['speedup']:.2f} [{low:.2f}-{high:.2f}]"
    return ", ".join(ranged(r) for r in rows)


def _over_alpha0(rows):
    """The figure's note of the same ratio over the alpha-0 network (not judged): its
    lowest row, or "" when no row has it."""
    rows = [r for r in rows if r["alpha0_speedup_over_macs_ratio"] is not None]
    if not rows:
        return ""
    worst = min(rows, key=lambda r: r["alpha0_speedup_over_macs_ratio"])
    return (f" (over the alpha-0 network, not judged: lowest "
            f"{_ranged(worst, 'alpha0_speedup_over_macs_ratio')}, {worst['network']})")


def _check(meta, key):
    """The figure's note of the machine's scaling check in the judged rows' rounds (the
    figures :func:`check_figures` put in ``meta[key]``), or "" without one."""
    figures = meta.get(key)
    return f"; the machine's scaling check in the same rounds: {figures}" if figures else ""


def verdicts(rows, meta):
    """Each target of the deployment round: (target, True when reached, False when
    missed, None when within the noise (:func:`_judge`), the figure: the deciding row's
    ratio with its 95 % interval in brackets)."""
    def pick(threads, batch=1):
        return {r["network"]: r for r in rows if r["threads"] == threads and r["batch"] == batch}

    one, two = pick(1), pick(2)
    checks = []
    if "vanilla ResNet-50" in one:
        v = one["vanilla ResNet-50"]
        checks.append(("1 thread: vanilla ResNet-50 TVM <= 0.9 x the fastest other backend",
                       _judge([v], "tvm_vs_best_other", 0.9, False),
                       _ranged(v, "tvm_vs_best_other") + " x"))
    octs = [r for r in one.values() if r["network"] in OCT_ROWS
            and r["network"].startswith("Oct-ResNet")]
    if octs:
        worst = min(octs, key=lambda r: r["speedup_over_macs_ratio"])
        checks.append((f"Oct-ResNet-50 speed-up >= 0.95 x MACs ratio at every alpha "
                       f"({meta['TVM target']})",
                       _judge(octs, "speedup_over_macs_ratio", 0.95, True),
                       f"lowest {_ranged(worst, 'speedup_over_macs_ratio')} "
                       f"({worst['network']})"
                       + _held(octs, "speedup_over_macs_ratio", 0.95, True, worst)
                       + _over_alpha0(octs)))
    mobile = [r for r in one.values() if r["network"] in OCT_ROWS
              and r["network"].startswith("Oct-MobileNet")]
    if mobile:
        worst = min(mobile, key=lambda r: r["speedup_over_macs_ratio"])
        every = [r for r in rows if r["network"] in OCT_ROWS
                 and r["network"].startswith("Oct-MobileNet") and r["speedup"] is not None]
        # faster than vanilla: speed-up > 1, i.e. speed-up / MACs ratio > 1 / MACs ratio
        faster = [(r, _judge([r], "speedup_over_macs_ratio", 1 / r["macs_ratio"], True))
                  for r in every]
        verdict = _together(_judge(mobile, "speedup_over_macs_ratio", 0.9, True),
                            *(judged for _, judged in faster))
        slower = [r for r, judged in faster if judged is False]
        close = [r for r, judged in faster if judged is None]
        checks.append(("Oct-MobileNets: speed-up >= 0.9 x MACs ratio on 1 thread and faster "
                       "than vanilla in every row", verdict,
                       f"lowest {_ranged(worst, 'speedup_over_macs_ratio')} "
                       f"({worst['network']})"
                       + _held(mobile, "speedup_over_macs_ratio", 0.9, True, worst)
                       + (f"; slower than vanilla: {_speedups(slower)}" if slower else "")
                       + (f"; as fast as vanilla within the noise: {_speedups(close)}"
                          if close else "")))
    for threads, by in ((1, one), (2, two)):
        octs = [r for r in by.values() if r["network"] in OCT_ROWS]
        if octs:
            worst = max(octs, key=lambda r: r["tvm_vs_best_other"])
            checks.append((f"{threads} thread{'s' if threads > 1 else ''}: every Oct network "
                           "faster in TVM than in each other backend",
                           _judge(octs, "tvm_vs_best_other", 1.0, False),
                           f"slowest {_ranged(worst, 'tvm_vs_best_other')} x the best other "
                           f"({worst['network']})"
                           + _held(octs, "tvm_vs_best_other", 1.0, False, worst)))
    scaled = [r for r in two.values() if r["scaling"]]
    if scaled:
        worst = min(scaled, key=lambda r: r["scaling"])
        checks.append(("TVM scaling from 1 to 2 threads >= 1.8 x",
                       _judge(scaled, "scaling", 1.8, True),
                       f"lowest {_ranged(worst, 'scaling')} ({worst['network']}), median "
                       f"{statistics.median(r['scaling'] for r in scaled):.2f}"
                       + _held(scaled, "scaling", 1.8, True, worst)
                       + _check(meta, "scaling check")))
    if "vanilla ResNet-50" in two:
        v = two["vanilla ResNet-50"]
        checks.append(("2 threads: vanilla ResNet-50 TVM <= 1.0 x the fastest other backend",
                       _judge([v], "tvm_vs_best_other", 1.0, False),
                       _ranged(v, "tvm_vs_best_other") + " x"))
    batched = [r for r in rows if r["batch"] == BATCH]
    if batched:
        worst = max(batched, key=lambda r: r["tvm_vs_best_other"])
        checks.append((f"batch {BATCH}: TVM images/s >= the fastest other backend",
                       _judge(batched, "tvm_vs_best_other", 1.0, False),
                       f"slowest {_ranged(worst, 'tvm_vs_best_other')} x the best other's "
                       f"time ({worst['network']})"
                       + _held(batched, "tvm_vs_best_other", 1.0, False, worst)
                       + _check(meta, f"scaling check at batch {BATCH}")))
    cold = meta["tuning records at start"] == 0
    limit = 360 if cold else 90
    checks.append((f"wall time {'from an empty cache <= 6 min' if cold else 'warm <= 90 s'}",
                   meta["wall_s"] <= limit, f"{meta['wall_s']:.0f} s"))
    return checks


MARKS = {True: "x", False: " ", None: "~"}  # reached, missed, within the noise


def _fmt(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


def write(rows, checks, meta, out_dir):
    import csv
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "table2.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# Table 2 / Table 3 timing: TVM vs MXNet (oneDNN) vs ONNX Runtime vs OpenVINO", "",
             f"Written by `tools/table2.py`; {SIZE} x {SIZE} inputs. Times are medians (ms per "
             "call) of interleaved rounds; spread is the interquartile range over the median; "
             "rows marked ~ stayed above the tolerance (noisy: read them with care). "
             "Ratios carry their 95 % interval in brackets (bootstrap over the rounds).", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()
              if k not in ("wall_s", "tuning records at start") and v is not None]
    lines += ["", "| network | threads | batch | MMACs | TVM ms | oneDNN ms | ORT ms | "
              "OpenVINO ms | TVM spread | img/s | TVM / best other | speed-up | MACs ratio | "
              "speed-up / MACs ratio | same over alpha 0 | 1->2 thread scaling | "
              "paper TVM ms |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
              "---:|"]
    for r in rows:
        mark = " ~" if r["noisy"] else ""
        lines.append(
            f"| {r['network']}{mark} | {r['threads']} | {r['batch']} | {r['macs_m']:.0f} | "
            f"{r['tvm_ms']:.1f} | {r['mxnet_ms']:.1f} | {r['onnxruntime_ms']:.1f} | "
            f"{r['openvino_ms']:.1f} | {100 * r['tvm_spread']:.1f} % | {r['images_per_s']:.1f} | "
            f"{_ranged(r, 'tvm_vs_best_other')} | {_fmt(r['speedup'])} | "
            f"{_fmt(r['macs_ratio'])} | {_ranged(r, 'speedup_over_macs_ratio')} | "
            f"{_ranged(r, 'alpha0_speedup_over_macs_ratio')} | {_ranged(r, 'scaling')} | "
            f"{r['paper_tvm_ms'] or ''} |")
    lines += ["", "## Targets", ""]
    lines += ["Each ratio is given with its 95 % interval (rounds resampled, the times of a "
              "round together). [x]: reached, [ ]: missed, [~]: within the noise (an "
              "interval holds the threshold).", ""]
    lines += [f"- [{MARKS[ok]}] {what}: {figure}" for what, ok, figure in checks]
    lines += ["", "![timings](table2.png)", ""]
    with open(os.path.join(out_dir, "table2.md"), "w") as f:
        f.write("\n".join(lines))
    _chart([r for r in rows if r["threads"] == 1 and r["batch"] == 1],
           os.path.join(out_dir, "table2.png"))


def _chart(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(12, 5))
    x = np.arange(len(rows))
    names = (("tvm_ms", "TVM"), ("mxnet_ms", "MXNet oneDNN"), ("onnxruntime_ms", "ONNX Runtime"),
             ("openvino_ms", "OpenVINO"))
    for k, (key, name) in enumerate(names):
        ax.bar(x + (k - 1.5) * 0.2, [r[key] for r in rows], 0.2, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels([r["network"] for r in rows], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("ms per image, single thread")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse(argv):
    parser = ArgumentParser(__doc__)
    parser.add_argument("--only", choices=("resnet", "mobilenet"))
    parser.add_argument("--threads", default="1,2",
                        help="comma-separated thread counts (0: all cores)")
    parser.add_argument("--no-batch", action="store_true", help=f"skip the batch {BATCH} rows")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="spread (IQR / median) below which timing stops")
    parser.add_argument("--max-runs", type=positive_int, default=30, help="round limit")
    add_after_idle_argument(parser)
    parser.add_argument("--budget", type=positive_int, default=4,
                        help="tiles tried per new convolution workload")
    parser.add_argument("--target", default=None,
                        help="LLVM CPU name for TVM (e.g. haswell on an AVX-512 machine)")
    parser.add_argument("--cache", default=None, help="the tuning cache file")
    parser.add_argument("--out-dir", default="results")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch-threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.thread_counts = sorted({int(t) for t in args.threads.split(",")})
    except ValueError:
        parser.error(f"--threads takes comma-separated counts, got {args.threads!r}")
    if min(args.thread_counts) < 0:
        parser.error("--threads: counts are 0 (all cores) or positive")
    if args.max_runs < 10:
        parser.error("--max-runs must be at least 10")
    if not 0 < args.tolerance < 1:
        parser.error("--tolerance is a fraction between 0 and 1")
    output_folder(args.out_dir, "--out-dir")
    if args.cache:
        output_path(args.cache, "--cache")
    return args


def worker_arguments(args, threads, json_path, cache_path, batch_threads):
    """The command-line arguments of the worker process that times every group on
    ``threads`` threads with the options ``args`` of this run, writing ``json_path``;
    ``batch_threads``: the thread count the batch rows are timed on (-1: none)."""
    arguments = ["--worker", str(threads), "--json", json_path, "--budget", str(args.budget),
                 "--tolerance", str(args.tolerance), "--max-runs", str(args.max_runs),
                 "--batch-threads", str(batch_threads), "--cache", cache_path]
    for flag, value in (("--only", args.only), ("--target", args.target)):
        if value:
            arguments += [flag, value]
    return arguments + (["--after-idle"] if args.after_idle else [])


@command
def main(argv=None):
    args = parse(argv)
    if args.worker is not None:
        worker(args)
        return 0
    from octconv.deploy.target import cpu_model, describe, make_target, vector_isa
    from octconv.deploy.threads import resolve_threads
    from octconv.deploy.tuning import TileCache
    from octconv.deploy.algorithms import POLICY as ALGORITHMS
    from octconv.deploy.scaling_check import DESCRIPTION
    from octconv.deploy.bench import timed_calls
    counts = sorted({resolve_threads(t) for t in args.thread_counts})
    cache = TileCache(args.cache)
    target = describe(make_target(args.target))
    cached_before = cache.usable(target)  # (other targets' and older versions' do not count)
    start = time.perf_counter()
    workers = []
    with tempfile.TemporaryDirectory() as folder, child_processes() as children:
        for threads in counts:
            path = os.path.join(folder, f"{threads}.json")
            command = [sys.executable, os.path.abspath(__file__)] + worker_arguments(
                args, threads, path, cache.path, -1 if args.no_batch else max(counts))
            children.append(subprocess.Popen(
                command, env=dict(os.environ, OMP_NUM_THREADS=str(threads))))
            if children[-1].wait():  # a stopped table run stops its worker (child_processes)
                raise subprocess.CalledProcessError(children[-1].returncode, command)
            with open(path) as f:
                workers.append(json.load(f))
    wall = time.perf_counter() - start
    rows = table(workers, args.tolerance)
    searches = sum(r["tvm"]["searches"] for w in workers for part in ("groups", "batch")
                   for g in w[part].values() for r in g.values())
    meta = {"CPU": cpu_model(), "ISA": vector_isa(), "TVM target": target,
            "threads": ", ".join(str(c) for c in counts),
            "versions": ", ".join(f"{k} {v}" for k, v in versions().items()),
            "algorithm": ALGORITHMS,
            "timing": f"{timed_calls(not args.after_idle)}; {SETTLE_RUNS} runs, then rounds "
                      f"of {STEP} until every spread < {100 * args.tolerance:.0f} % or "
                      f"{args.max_runs} runs; after {SETTLE_RUNS}, a backend whose first "
                      f"quartile exceeds the fastest other's third stops; the scaling "
                      f"check: {DESCRIPTION}",
            "scaling check": check_figures(workers, "groups"),
            f"scaling check at batch {BATCH}": check_figures(workers, "batch"),
            "search budget": f"{args.budget} tiles per workload",
            "tuning cache at start": f"{cached_before} usable records for this target",
            "tuning records at start": cached_before,
            "searches run": searches,
            "wall time": f"{wall:.0f} s (compile, tuning and timing)", "wall_s": wall}
    checks = verdicts(rows, meta)
    write(rows, checks, meta, args.out_dir)
    for what, ok, figure in checks:
        print(f"[{MARKS[ok]}] {what}: {figure}")
    print(f"wrote {os.path.join(args.out_dir, 'table2.md')} (.csv, .png) in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
