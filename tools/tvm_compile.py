#!/usr/bin/env python
"""Compile a zoo network or a trained checkpoint with TVM for a CPU; optionally time it
beside MXNet (oneDNN), ONNX Runtime and OpenVINO on the same thread count.

    python tools/tvm_compile.py --model resnet50_v2 --alpha 0.5 --time
    python tools/tvm_compile.py --model resnet50_v2 --threads 0 --batch 8 --time
    python tools/tvm_compile.py --checkpoint runs/demo --size 32 --out runs/demo/model.so --time
    python tools/tvm_compile.py --model resnet50_v2 --alpha .25 --params r50_a25.params
    python tools/tvm_compile.py --model mobilenet_v2_100 --target skylake-avx512 --out m.so
    python tools/tvm_compile.py --model resnet50_v2 --alpha .75 --profile 15

``--target`` takes an LLVM CPU name (default: this machine); a target this machine
cannot run is cross-compiled (no tuning, no timing). Tuning results are cached in
``--cache`` (default ``$OCTCONV_TVM_CACHE`` or ``~/.cache/octconv/tvm_tiles.json``), the
compiled libraries in the ``libraries/`` folder beside it. ``--threads`` (default 1,
as the paper; 0 = all cores) applies to every backend. ``--profile N`` prints the N
slowest compiled kernels of a call (median time, share, calls, multiply-adds counted
directly and the rate they imply, and the same calls' time with the kernel run alone
on its own arrays: where the network's time exceeds it, the kernel waits for data
that its predecessors left in L3 or memory) and the total.
"""
import os
import sys

from octconv.cli import (ArgumentParser, add_network_arguments, check_network_arguments,
                         chosen_network, command, output_path, positive_int)


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
    parser.add_argument("--profile", type=positive_int, metavar="N",
                        help="print the N slowest kernels of a call (timed over --runs calls)")
    parser.add_argument("--budget", type=positive_int, default=4,
                        help="tiles tried per new convolution workload")
    parser.add_argument("--cache", default=None, help="the tuning cache file")
    args = parser.parse_args(argv)
    check_network_arguments(parser, args)
    if args.threads < 0:
        parser.error("--threads must be 0 (all cores) or a positive count")
    for option, path in (("--out", args.out), ("--cache", args.cache)):
        if path:
            output_path(path, option)
    return args


@command
def main(argv=None):
    args = parse(argv)
    from octconv.deploy.threads import resolve_threads
    threads = resolve_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # MXNet's count, before it starts
    from octconv.deploy.bench import ratio_interval, time_backends, zoo_network
    from octconv.deploy.compile import compile_symbol
    from octconv.deploy.target import describe, make_target, runs_here
    from octconv.deploy.tuning import TileCache
    model, params = chosen_network(args)
    if params is not None:
        params = {k: v.asnumpy() for k, v in params.items()}
    network = zoo_network(params=params, size=args.size, **model)
    target = make_target(args.target)
    cache = TileCache(args.cache)
    print(f"{network.label}: {network.macs(args.size) / 1e6:.1f} M multiply-adds per "
          f"image at {args.size} px, target {describe(target)}")
    if (args.time or args.profile) and not runs_here(target):
        raise ValueError(f"cannot time {describe(target)} on this machine")
    shape = (args.batch, 3, args.size, args.size)
    compiled = compile_symbol(network.symbol, network.params, shape, target, cache,
                              args.budget, threads, winograd=not args.no_winograd)
    print(f"TVM compile: {compiled.stats}")
    if args.out:
        print(f"wrote {compiled.export(args.out)}")
    if args.profile:
        print_profile(compiled, shape, args.runs, args.profile)
    if args.time:
        result = time_backends(network, args.size, runs=args.runs, cache=cache,
                               compiled=compiled, threads=threads, batch=args.batch)
        print(f"{threads} thread(s), batch {args.batch}, {args.runs} interleaved runs "
              "(median, min-max, images/s; TVM's time over the backend's, with a 95 % "
              "interval from resampling the rounds):")
        tvm_ms = result["ms"]["tvm"]["median"]
        for backend, ms in result["ms"].items():
            diff = result["max_diff"].get(backend)
            agree = "" if diff is None else \
                f"   max |diff| vs MXNet {diff / max(result['scale'], 1e-12):.2g} x max |out|"
            versus = ""
            if backend != "tvm":
                low, high = ratio_interval(result["times"]["tvm"], result["times"][backend])
                versus = f"   TVM / it {tvm_ms / ms['median']:.3g} [{low:.3g}-{high:.3g}]"
            print(f"  {backend:12s} {ms['median']:9.3f} ms  ({ms['min']:.3f}-{ms['max']:.3f})"
                  f"  {1e3 * args.batch / ms['median']:8.1f} img/s{versus}{agree}")
    return 0


def print_profile(compiled, shape, runs, top):
    """The ``top`` slowest kernels of a call on random input, then the total."""
    import numpy as np
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    rows = compiled.profile(x, runs, alone=True)
    total_ms = sum(r["ms"] for r in rows)
    total_alone = sum(r["alone_ms"] for r in rows)
    total_macs = sum(r["macs"] for r in rows)
    print(f"kernels of one call, median of {runs} calls on {compiled.threads} thread(s):")
    print(f"  {'kernel':14s} {'calls':>5s} {'ms':>8s} {'share':>6s} {'M mult-adds':>11s} "
          f"{'G/s':>6s} {'alone ms':>8s}")
    for r in rows[:top]:
        rate = f"{r['macs'] / r['ms'] / 1e6:6.1f}" if r["macs"] and r["ms"] else " " * 6
        print(f"  {r['function']:14s} {r['calls']:5d} {r['ms']:8.3f} "
              f"{100 * r['ms'] / total_ms:5.1f}% {r['macs'] / 1e6:11.1f} {rate} "
              f"{r['alone_ms']:8.3f}")
    print(f"  {'total':14s} {sum(r['calls'] for r in rows):5d} {total_ms:8.3f} "
          f"{100.0:5.1f}% {total_macs / 1e6:11.1f} {'':6s} {total_alone:8.3f}")


if __name__ == "__main__":
    sys.exit(main())
