#!/usr/bin/env python
"""Compile a zoo network or a trained checkpoint with TVM for a CPU; optionally time it
beside MXNet (oneDNN), ONNX Runtime and OpenVINO on the same thread count.

    python tools/tvm_compile.py --model resnet50_v2 --alpha 0.5 --time
    python tools/tvm_compile.py --model mobilenet_v1_075 --alpha .375 --time --after-idle
    python tools/tvm_compile.py --model resnet50_v2 --threads 0 --batch 8 --time
    python tools/tvm_compile.py --checkpoint runs/demo --size 32 --out runs/demo/model.so --time
    python tools/tvm_compile.py --model resnet50_v2 --alpha .25 --params r50_a25.params
    python tools/tvm_compile.py --model mobilenet_v2_100 --target skylake-avx512 --out m.so
    python tools/tvm_compile.py --model resnet50_v2 --alpha .75 --profile 15
    python tools/tvm_compile.py --model resnet50_v2 --alpha .5 --time --json r50.json
    python tools/tvm_compile.py --model mobilenet_v1_075 --alpha .375 --requests 2
    python tools/tvm_compile.py --model resnet50_v2 --alpha .5 --size 224x320 --out r50.so

``--size`` takes a side or HEIGHTxWIDTH.

``--target`` takes an LLVM CPU name (default: this machine); a target this machine
cannot run is cross-compiled (no tuning, no timing). Tuning results are cached in
``--cache`` (default ``$OCTCONV_TVM_CACHE`` or ``~/.cache/octconv/tvm_tiles.json``), the
compiled libraries in the ``libraries/`` folder beside it. ``--threads`` (default 1,
as the paper; 0 = all cores) applies to every backend. ``--profile N`` prints the N
slowest compiled kernels of a call (median time, share, calls, multiply-adds counted
directly and the rate they imply, the megabytes of weights its calls read, and the
same calls' time with the kernel run alone on its own arrays, in cache and with all
but its input flushed from the caches before each call: where the network's time
exceeds the first, the kernel waits for data that its predecessors left in L3 or
memory; where it is near the second, for its weights from memory) and the total; on
more than one thread also each kernel alone on one thread and its scaling alone (a
kernel that scales alone but not inside the network waits there for what another core
wrote). On more than one thread a profile varies from process to process far more than
whole calls do (Oct-MobileNet v1 0.75 on 2 threads: totals of 2.5-3.2 ms, whole calls
2.56-2.68), so compare kernels within one profile. ``--requests N`` times TVM's
library, ONNX Runtime and OpenVINO serving N request threads at once, each on
``--threads`` threads (a thread calling a library runs a VM of its own; ONNX Runtime's
calls share one session's pool; OpenVINO runs N streams), against one request thread
making as many calls, in --runs interleaved rounds: images/s of each, the gain with its
95 % interval and TVM's images/s at once over each other backend's; every output is
checked against one call's alone, and each backend's against MXNet's.
On more than one thread ``--time`` also times, in the same rounds, TVM's library on
one thread and the machine's scaling check on one thread and on all of them (a
compute-bound convolution whose threads share no data: how far the machine let a
kernel scale while the backends were timed; on a shared virtual machine, far from the
thread count at times), and prints both scalings, and the machine's data-passing check
(how much longer threads take to read what another core wrote than what they wrote
themselves: at times far longer on such a machine, which slows a network, whose
threads hand each other their maps, and not the compute-bound check). Each backend's
turn in a round starts once the previous backend's workers are idle, with untimed calls
for 40 ms, and the call after them is timed (calls back to back, as under steady load
and as each runtime's own benchmark tool times them); ``--after-idle`` times the first
call after the wait instead (a request arriving at an idle process; on several threads
of a virtual machine it also pays for bringing a sleeping core back, a cost that varied
several-fold within an hour on this project's).
``--json PATH`` also writes what is printed to a JSON file, for scripts: the network,
its input, target, this machine's CPU and vector extensions and threads, the compile's
statistics, and, as asked, each backend's times (median, extremes, quartiles, spread,
runs, images/s; ``steady``: whether each followed untimed calls), TVM's time over its
with the 95 % interval, its largest difference from MXNet over MXNet's largest
|output|, the two scalings and the data-passing figure, the profile's rows and the
serving times.
"""
import json
import os
import sys

from octconv.cli import (ArgumentParser, add_after_idle_argument, add_network_arguments,
                         check_network_arguments, chosen_network, command, output_path,
                         positive_int)


def parse(argv):
    parser = ArgumentParser(__doc__)
    add_network_arguments(parser)
    parser.add_argument("--threads", type=int, default=1, help="threads (0: all cores)")
    parser.add_argument("--target", default=None, help="LLVM CPU name, e.g. skylake-avx512")
    parser.add_argument("--no-winograd", action="store_true",
                        help="3x3 convolutions computed directly, not by Winograd")
    parser.add_argument("--out", help="write the compiled library (.so) here")
    parser.add_argument("--time", action="store_true",
                        help="time TVM, MXNet, ONNX Runtime and OpenVINO")
    parser.add_argument("--runs", type=positive_int, default=10, help="timed runs per backend")
    add_after_idle_argument(parser)
    parser.add_argument("--requests", type=positive_int, metavar="N",
                        help="time TVM, ONNX Runtime and OpenVINO serving N (>= 2) "
                             "request threads at once against one")
    parser.add_argument("--profile", type=positive_int, metavar="N",
                        help="print the N slowest kernels of a call (timed over --runs calls)")
    parser.add_argument("--budget", type=positive_int, default=4,
                        help="tiles tried per new convolution workload")
    parser.add_argument("--cache", default=None, help="the tuning cache file")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    check_network_arguments(parser, args)
    if args.threads < 0:
        parser.error("--threads must be 0 (all cores) or a positive count")
    if args.requests == 1:
        parser.error("--requests takes 2 or more request threads (one is --time's TVM row)")
    for option, path in (("--out", args.out), ("--cache", args.cache), ("--json", args.json)):
        if path:
            output_path(path, option)
    return args


@command
def main(argv=None):
    args = parse(argv)
    from octconv.deploy.threads import resolve_threads
    threads = resolve_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # MXNet's count, before it starts
    from octconv.deploy.bench import time_backends, zoo_network
    from octconv.deploy.compile import compile_symbol
    from octconv.deploy.target import cpu_model, describe, make_target, runs_here, vector_isa
    from octconv.deploy.tuning import TileCache
    from octconv.files import write_atomically
    from octconv.specs import images_shape, sides_text
    model, params = chosen_network(args)
    if params is not None:
        params = {k: v.asnumpy() for k, v in params.items()}
    network = zoo_network(params=params, size=args.size, **model)
    target = make_target(args.target)
    cache = TileCache(args.cache)
    shape = images_shape(args.size, args.batch)
    report = {"network": network.label, "macs_per_image": network.macs(args.size),
              "input_shape": list(shape), "threads": threads,
              "target": describe(target), "cpu": cpu_model(), "isa": vector_isa()}
    print(f"{network.label}: {report['macs_per_image'] / 1e6:.1f} M multiply-adds per "
          f"image of {sides_text(args.size)} px, target {report['target']} on "
          f"{report['cpu']} with {report['isa']}")
    if (args.time or args.profile or args.requests) and not runs_here(target):
        raise ValueError(f"cannot time {describe(target)} on this machine")
    compiled = compile_symbol(network.symbol, network.params, shape, target, cache,
                              args.budget, threads, winograd=not args.no_winograd)
    report["compile"] = compiled.stats
    print(f"TVM compile: {compiled.stats}")
    if args.out:
        report["library"] = os.path.abspath(compiled.export(args.out))
        print(f"wrote {args.out}")
    if args.profile:
        report["profile"] = print_profile(compiled, shape, args.runs, args.profile)
    if args.time:
        result = time_backends(network, args.size, runs=args.runs, cache=cache,
                               compiled=compiled, threads=threads, batch=args.batch,
                               scaling=True, steady=not args.after_idle)
        report["steady"] = not args.after_idle
        report["timing"] = print_timing(result, threads, args.batch, args.runs,
                                        report["steady"])
        if "scaling" in result:
            report["scaling"] = print_scaling(result["scaling"])
    if args.requests:
        report["serving"] = print_serving(network, compiled, args.requests, args.runs, cache)
    if args.json:
        write_atomically(args.json, lambda tmp: json.dump(report, open(tmp, "w"), indent=1))
        print(f"wrote {args.json}")
    return 0


def print_timing(result, threads, batch, runs, steady):
    """Print each backend's times (:func:`~octconv.deploy.bench.time_backends`'
    ``result``; ``steady``: each timed call followed untimed ones of its backend) and
    return them by backend: the summary, images/s, TVM's time over its (``tvm_over_it``,
    with its 95 % ``interval``) and its largest difference from MXNet over MXNet's
    largest |output| (``max_diff``)."""
    from octconv.deploy.bench import median_ratio, timed_calls
    print(f"{threads} thread(s), batch {batch}, {runs} interleaved runs, "
          f"{timed_calls(steady)} (median, min-max, images/s; TVM's time over the backend's, "
          "with a 95 % interval from resampling the rounds):")
    timing = {}
    for backend, ms in result["ms"].items():
        entry = timing[backend] = dict(ms, images_per_s=1e3 * batch / ms["median"])
        line = (f"  {backend:12s} {ms['median']:9.3f} ms  ({ms['min']:.3f}-{ms['max']:.3f})"
                f"  {entry['images_per_s']:8.1f} img/s")
        if backend != "tvm":
            entry["tvm_over_it"], entry["interval"] = median_ratio(result["times"]["tvm"],
                                                                   result["times"][backend])
            low, high = entry["interval"]
            line += f"   TVM / it {entry['tvm_over_it']:.3g} [{low:.3g}-{high:.3g}]"
        if backend in result["max_diff"]:
            entry["max_diff"] = result["max_diff"][backend]
            line += f"   max |diff| vs MXNet {entry['max_diff']:.2g} x max |out|"
        print(line)
    return timing


def print_scaling(scaling):
    """Print TVM's scaling from one thread, the machine's scaling check's and its
    data-passing check's figure, timed in the same rounds
    (:func:`~octconv.deploy.bench.time_backends`' ``result["scaling"]``), and return
    them."""
    from octconv.deploy.bench import passing_text, thread_scaling_text
    threads = scaling["threads"]
    print(f"  1 -> {threads} threads in the same rounds: TVM "
          f"{thread_scaling_text(scaling['tvm'], threads)}; the machine's scaling check (a "
          f"compute-bound 3x3 convolution whose threads share no data) "
          f"{thread_scaling_text(scaling['check'], threads)}; its data-passing check "
          f"({threads} threads): {passing_text(scaling['passing'])}")
    return scaling


def print_serving(network, compiled, requests, rounds, cache):
    """Print the images/s of TVM's library ``compiled``, ONNX Runtime and OpenVINO
    serving ``requests`` request threads at once against one request thread, in
    interleaved rounds (:func:`~octconv.deploy.bench.time_serving_backends`), each
    backend's output against MXNet's, and TVM's images/s at once over each other's;
    return them by backend: the summary of each one's images/s per round
    (:func:`~octconv.deploy.bench.summarize`), the gain and its interval, ``max_diff``,
    and ``tvm_over_it`` with its interval."""
    from octconv.deploy.bench import median_ratio, summarize, time_serving_backends
    result = time_serving_backends(network, compiled, requests, rounds, cache)
    print(f"serving {requests} request threads of {compiled.threads} thread(s) each, batch "
          f"{compiled.input_shape[0]}, {rounds} interleaved rounds (images/s: median, "
          "min-max; at once over one request thread, and TVM's at once over the "
          "backend's, with 95 % intervals):")
    serving, tvm = {"requests": requests, "backends": {}}, result["backends"]["tvm"]["many"]
    for backend, rates in result["backends"].items():
        row = serving["backends"][backend] = {
            "calls_per_request_thread": rates["calls"], "one": summarize(rates["one"]),
            "many": summarize(rates["many"]), "gain": rates["gain"],
            "interval": rates["interval"], "max_diff": result["max_diff"][backend]}
        low, high = row["interval"]
        line = (f"  {backend:12s} one {row['one']['median']:8.1f} ({row['one']['min']:.1f}-"
                f"{row['one']['max']:.1f})  at once {row['many']['median']:8.1f} "
                f"({row['many']['min']:.1f}-{row['many']['max']:.1f})  gain "
                f"{row['gain']:.3g} [{low:.3g}-{high:.3g}]")
        if backend != "tvm":
            row["tvm_over_it"], row["tvm_over_it_interval"] = median_ratio(tvm, rates["many"])
            low, high = row["tvm_over_it_interval"]
            line += f"  TVM / it {row['tvm_over_it']:.3g} [{low:.3g}-{high:.3g}]"
        print(line + f"  max |diff| vs MXNet {row['max_diff']:.2g} x max |out|")
    return serving


def print_profile(compiled, shape, runs, top):
    """Print the ``top`` slowest kernels of a call on random input, then the total;
    return every kernel's row (:meth:`CompiledNetwork.profile`). On more than one
    thread also each kernel's time alone on one thread and its scaling alone."""
    from octconv.deploy.bench import random_input
    rows = compiled.profile(random_input(shape), runs, alone=True)
    threaded = compiled.threads > 1
    total = {key: sum(r[key] for r in rows)
             for key in ("calls", "ms", "macs", "weight_bytes", "alone_ms", "cold_ms")}

    def scaling(one, many):
        return f" {one:8.3f} {one / many:7.2f}" if threaded else ""

    print(f"kernels of one call, median of {runs} calls on {compiled.threads} thread(s):")
    print(f"  {'kernel':14s} {'calls':>5s} {'ms':>8s} {'share':>6s} {'M mult-adds':>11s} "
          f"{'G/s':>6s} {'weight MB':>9s} {'alone ms':>8s} {'cold ms':>8s}"
          + (f" {'1 thread':>8s} {'scaling':>7s}" if threaded else ""))
    for r in rows[:top]:
        rate = f"{r['macs'] / r['ms'] / 1e6:6.1f}" if r["macs"] and r["ms"] else " " * 6
        print(f"  {r['function']:14s} {r['calls']:5d} {r['ms']:8.3f} "
              f"{100 * r['ms'] / total['ms']:5.1f}% {r['macs'] / 1e6:11.1f} {rate} "
              f"{r['weight_bytes'] / 1e6:9.2f} {r['alone_ms']:8.3f} {r['cold_ms']:8.3f}"
              + scaling(r.get("alone_1_thread_ms"), r["alone_ms"]))
    print(f"  {'total':14s} {total['calls']:5d} {total['ms']:8.3f} {100.0:5.1f}% "
          f"{total['macs'] / 1e6:11.1f} {'':6s} {total['weight_bytes'] / 1e6:9.2f} "
          f"{total['alone_ms']:8.3f} {total['cold_ms']:8.3f}"
          + scaling(sum(r.get("alone_1_thread_ms", 0) for r in rows), total["alone_ms"]))
    return rows


if __name__ == "__main__":
    sys.exit(main())
