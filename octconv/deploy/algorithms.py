"""Which kernel computes each convolution, where the fastest depends on the machine:
for a 3x3 stride-1 convolution, the algorithm (directly, by Winograd's F(2x2, 3x3) or
F(4x4, 3x3)), and for an odd count of 8-channel output blocks on 16-lane vectors,
whether they pair in 16-lane accumulators. Measured per workload with its weights out
of cache, and kept in the tuning cache.

Timed alone, again and again on the same arrays (as the tile search times kernels), a
convolution finds its weights in cache; inside a network it reads them from memory,
once per call. Winograd's transformed weights are 16 / 9 (F(2x2)) and 36 / 9 (F(4x4))
times the direct kernel's, so on small maps, where each weight serves few pixels, the
algorithm with the fewest multiplies can be the slowest. On an Intel Xeon (ms per
call, 224 -> 224 channels at 14 px, alone / weights flushed): F(4x4) 0.51 / 1.02,
F(2x2) 0.52 / 0.62, direct 0.86 / 0.93; inside Oct-ResNet-50 that layer took 1.02.

Paired, an odd count of 8-channel blocks pairs its last with a dropped block of zero
weights: 3 blocks compute 4, 5 compute 6. Where AVX-512 runs on full-width units (an
AMD Zen 5), a 16-lane multiply-add costs what an 8-lane one does, and pairing won
(results/NOTES.md, stop 57); where it runs as two 256-bit halves (an AMD Zen 4), an
8-lane multiply-add costs half a 16-lane one, and the dropped block is paid for:
there the Oct-MobileNets' layers of 3 and 5 blocks ran 5-20 % faster unpaired alone
(one of 21 6 % slower), those of 7 blocks 1-5 % faster, those of 11 4-6 % slower
(results/NOTES.md, stop 62). An even count pairs with nothing dropped, and stays
paired.

So each candidate is timed with its searched tile and every argument but its input
flushed from the caches before each call (:func:`~octconv.deploy.tuning.time_cold`),
and the fastest is kept. Without a measurement (cross-compiling, a search budget of 1)
the fixed rules decide: :data:`~octconv.deploy.winograd.RULE`, and blocks paired.
"""
import tempfile
from dataclasses import replace

import tvm

from octconv.deploy import builders
from octconv.deploy.target import runs_here, vector_lanes
from octconv.deploy.threads import use_threads
from octconv.deploy.tuning import SCHEDULE_VERSION, build_here, build_in_processes, \
    choose_tile, kernel_arguments, search_tiles, time_cold
from octconv.deploy.winograd import Winograd, output_tile, worthwhile

__all__ = ["AlgorithmChoice", "candidates", "pairings", "label", "record_key", "POLICY"]

POLICY = ("3x3 stride-1 convolutions with >= 16 channels directly, by F(2x2, 3x3) (maps of "
          ">= 7 px) or by F(4x4, 3x3) (>= 14 px), and an odd count of 8-channel output "
          "blocks on 16-lane vectors paired in 16-lane accumulators or not, whichever was "
          "measured fastest with its weights out of cache; the rest direct")


def _tile(kernel):
    """A candidate's algorithm: Winograd's output tile m, 0 for direct."""
    return getattr(kernel, "m", 0)


def label(kernel):
    """A candidate's name in the cache: its algorithm (``direct``, ``F(2x2)``,
    ``F(4x4)``), then `` paired`` where its output blocks pair."""
    m = _tile(kernel)
    return (f"F({m}x{m})" if m else "direct") + (" paired" if kernel.paired else "")


def pairings(direct, lanes):
    """The direct kernel ``direct`` (unpaired) as to pairing its output blocks on
    ``lanes``-wide vectors: unpaired alone where it should not pair
    (:meth:`~octconv.deploy.kernels.Conv.pairs_on`), paired alone where an even count of
    blocks pairs with none dropped, else unpaired, then paired (the fixed rule's pick:
    last)."""
    if not direct.pairs_on(lanes):
        return [direct]
    paired = replace(direct, paired=True)
    return [paired] if direct.out_blocks % 2 == 0 else [direct, paired]


def candidates(direct, lanes, size, in_channels, out_channels, band_bytes, winograd):
    """``(kernels, the fixed rules' pick)`` for a convolution whose direct kernel,
    unpaired, is ``direct``, its output ``size`` (rows, cols), on ``lanes``-wide
    vectors: the direct kernel as :func:`pairings` offers it; with ``winograd`` (a 3x3
    stride-1 convolution of one group may use it) and >= 16 channels on either side,
    for each of those F(2x2) on maps of >= 7 px and F(4x4) on >= 14 px
    (:data:`POLICY`), running in bands up to ``band_bytes`` of transformed weights
    (:func:`~octconv.deploy.winograd.band_bytes`). The pick: the algorithm
    :data:`~octconv.deploy.winograd.RULE` says, paired where it may pair.
    (Offered on 7 px maps too, F(4x4) was measured fastest for ResNet-50's and
    Oct-ResNet-50 alpha .75's 7 px layers on a Zen 4, but the networks ran within 1-2 %
    of their F(2x2) libraries' time: not worth more tile searches.)"""
    directs = pairings(direct, lanes)
    side, kernels = min(size), list(directs)
    if winograd and min(in_channels, out_channels) >= 16:
        kernels += [Winograd(d.data, d.out_blocks, d.out_block, d.pad, m, d.epilogue, d.paired,
                             band_bytes)
                    for d in directs for m, smallest in ((2, 7), (4, 14)) if side >= smallest]
    rule = output_tile(side) if winograd and worthwhile(size, in_channels, out_channels) else 0
    paired = directs[-1].paired
    return kernels, next(k for k in kernels if _tile(k) == rule and k.paired == paired)


def record_key(kernels):
    """The tuning-cache key of a convolution's choice: the schedule version and the
    first (direct) candidate's workload; the record holds the chosen candidate's
    :func:`label`."""
    return f"v{SCHEDULE_VERSION} kernel choice {kernels[0].workload().key()}"


class AlgorithmChoice:
    """Called by the lowering with a convolution's candidate kernels (:func:`candidates`,
    a direct one first) and the fixed rules' pick: returns the recorded choice; else,
    when the target runs here and ``budget`` > 1, notes the convolution for
    :meth:`measure` and returns the first candidate (a program lowered before a
    measurement is lowered again after it, so this one only has to list the
    convolutions: the direct kernel's weights need no Winograd transform, which took
    0.6 of Oct-ResNet-50's 0.7 s of lowering); else the rules' pick."""

    def __init__(self, target, cache, budget):
        self.target, self.cache, self.budget = target, cache, budget
        self.measurable = budget > 1 and runs_here(target)
        self.pending = {}

    def __call__(self, kernels, default):
        key = record_key(kernels)
        chosen = [k for k in kernels if label(k) == self.cache.value(self.target, key)]
        if chosen:
            return chosen[0]
        if self.measurable:
            self.pending[key] = kernels
            return kernels[0]
        return default

    def measure(self):
        """Time the noted convolutions' candidates (tiles searched first, as for any
        kernel; then each candidate's workload with its tile timed cold on one thread,
        in the library its search built, or in one built now when its tile was known
        before), record the fastest of each and save the cache. Returns whether
        anything was measured."""
        if not self.pending:
            return False
        lanes = vector_lanes(self.target)
        workloads = [k.workload() for kernels in self.pending.values() for k in kernels]
        built = search_tiles(workloads, self.target, lanes, self.cache, self.budget)
        unbuilt = {kernel.key(): kernel for kernel in workloads if kernel.key() not in built}
        if unbuilt:  # tiles known before: built for this timing
            names = {key: f"candidate{j}" for j, key in enumerate(unbuilt)}
            functions = {names[key]: (kernel, choose_tile(kernel, self.target, lanes,
                                                          self.cache, self.budget))
                         for key, kernel in unbuilt.items()}
            with tempfile.TemporaryDirectory() as folder:
                libraries = _build(functions, self.target, folder)
            built.update({key: (libraries[name], name) for key, name in names.items()})
        use_threads(1)
        for key, kernels in self.pending.items():
            times = [time_cold(*built[k.workload().key()], kernel_arguments(k.workload()))
                     for k in kernels]
            self.cache.put_value(self.target, key, label(kernels[times.index(min(times))]))
        self.cache.save()
        self.pending = {}
        return True


def _build(functions, target, folder):
    """``{name: the loaded library holding it}`` for ``functions`` (name -> (kernel,
    tile)), built in one library per build process (:func:`builders.parts
    <octconv.deploy.builders.parts>`), or here if one failed."""
    parts = builders.parts(list(functions))
    paths = build_in_processes([{name: functions[name] for name in part} for part in parts],
                               target, folder)
    if paths is None:
        return dict.fromkeys(functions, build_here(functions, target))
    return {name: library for part, path in zip(parts, paths)
            for library in [tvm.runtime.load_module(path)] for name in part}
