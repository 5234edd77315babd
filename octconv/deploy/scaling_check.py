"""How much of several cores the machine gives: a compute-bound kernel timed on one
thread and on N, and how fast it passes data between them, in the same timing loop as
the networks.

On a shared virtual machine two vCPUs may run at full speed for some seconds and far
below it for others (on this project's 2-core KVM machines the same library's calls
scaled from 1 to 2 threads by 1.85-1.95 in some stretches and by 1.1-1.4 in others:
results/NOTES.md, stop 45), so a network's thread scaling holds the machine's share
beside its own code's. The check sets them apart: one 3x3 convolution of
:data:`IMAGES` images of :data:`CHANNELS` channels at :data:`SIDE` px (231 M
multiply-adds; an image's input and output and the weights, 550 KB, stay in a core's
L2 cache), scheduled as the networks' direct convolutions are with its first candidate
tile. Its parallel loop gives each thread whole bands of rows, so neither memory nor
an uneven split of the work limits it: timed beside the networks, its scaling is what
the machine allowed a kernel that needs nothing from it but cores.

Its threads share no data, so it does not see a machine that passes data between its
cores slowly, which slows a network, whose threads hand each other parts of their maps
at every layer (results/NOTES.md, stops 46 and 66). The check's second part, the
data-passing check, measures that: on N threads, passes of two kernels, the first
writing a part of :data:`PART_FLOATS` floats on each thread (in its core's L2 cache),
the second reading on each thread either the part it wrote (``own``) or the part of the
next thread (``passed``, written on another core). The passes that read another core's
writes take longer by what moving them between the cores costs; their time over the
others' is the data-passing figure (1 where passing data is as fast as reading one's
own cache). On this project's 2-core Zen 4 VM it was 2-3 in some stretches and 9-11 in
others, minutes long, in which a network's 2-thread calls took 1.5 x as long while the
compute-bound check still scaled by 2.0 (results/NOTES.md, stop 66).
"""
import hashlib

import numpy as np
import tvm
from tvm import s_tir, te

from octconv.deploy.kernels import Conv, Epilogue
from octconv.deploy.libraries import LibraryCache
from octconv.deploy.target import describe, vector_lanes
from octconv.deploy.threads import resolve_threads, use_threads
from octconv.deploy.tuning import SCHEDULE_VERSION, functions_module, kernel_arguments

__all__ = ["check_kernel", "passing_functions", "scaling_check", "figures", "DESCRIPTION",
           "PART_FLOATS", "PASSES"]

IMAGES, CHANNELS, SIDE = 8, 64, 28
# the data-passing check: floats each thread writes and reads per pass (256 KB: in L2 on
# every x86 core of this decade), passes per call
PART_FLOATS, PASSES = 64 << 10, 16
DESCRIPTION = (f"a compute-bound 3x3 convolution ({IMAGES} images, {CHANNELS} channels, "
               f"{SIDE} px, in each core's L2 cache) timed on 1 and on N threads in the "
               "rounds of each group timed on N > 1 threads: how far the machine let a kernel "
               "scale whose threads share no data; and, on N threads, the time of passes in "
               f"which each thread reads the {PART_FLOATS * 4 >> 10} KB another thread has "
               "just written over that of passes in which it reads its own (data passing "
               "between cores)")


def check_kernel(lanes):
    """The check's convolution in blocks of ``lanes`` channels (the target's vector)."""
    blocks = CHANNELS // lanes
    return Conv((IMAGES, blocks, SIDE, SIDE, lanes), blocks, lanes, blocks, 1, 3, 1, 1,
                Epilogue((("bias",),)))


def passing_functions(parts, lanes):
    """The data-passing check's PrimFuncs for ``parts`` threads, on arrays of ``parts``
    rows of :data:`PART_FLOATS` floats, each parallel over the rows (a thread a row),
    in vectors of ``lanes``: ``write`` (x, y) sets y = x / 2 + 1; ``own`` (y, z) sets
    row i of z to 2 y[i] - 1, from the row its thread wrote; ``passed`` (y, z) to
    2 y[(i + 1) % parts] - 1, from the row another thread wrote."""
    shape = (parts, PART_FLOATS)

    def scheduled(inputs, output):
        sch = s_tir.Schedule(te.create_prim_func([inputs, output]))
        part, floats = sch.get_loops(sch.get_sblock(output.op.name))
        sch.vectorize(sch.split(floats, [None, lanes])[1])
        sch.parallel(part)
        return sch.mod["main"]

    x, y = te.placeholder(shape, name="x"), te.placeholder(shape, name="y")
    return {"write": scheduled(x, te.compute(shape, lambda i, j: x[i, j] * 0.5 + 1, "y_w")),
            "own": scheduled(y, te.compute(shape, lambda i, j: y[i, j] * 2 - 1, "z_own")),
            "passed": scheduled(y, te.compute(
                shape, lambda i, j: y[(i + 1) % parts, j] * 2 - 1, "z_passed"))}


class _Calls:
    """A runner for :func:`~octconv.deploy.bench.interleave`: ``repeat`` times the
    ``calls`` ((function, arguments), ...) in turn, on ``threads`` threads;
    :meth:`prepare` switches TVM's pool to them and says whether it did (as
    :class:`~octconv.deploy.bench.TVMRunner`'s does)."""

    def __init__(self, calls, threads, repeat=1):
        self.calls, self.threads, self.repeat = calls, threads, repeat

    def prepare(self):
        return use_threads(self.threads)

    def __call__(self):
        for _ in range(self.repeat):
            for function, args in self.calls:
                function(*args)


def scaling_check(threads, target, cache):
    """``{"tvm": the compute-bound check on threads (0: all cores), "tvm_1": the same
    on one, "own" and "passed": the data-passing check's :data:`PASSES` passes on
    threads}``, runners of random arrays for ``target`` (which must run here). Their
    library is kept among the compiled libraries beside ``cache`` (a
    :class:`~octconv.deploy.tuning.TileCache`), named by the kernels, tile, thread
    count, target and code, so a second run builds nothing."""
    threads = resolve_threads(threads)
    lanes = vector_lanes(target)
    kernel = check_kernel(lanes)
    tile = kernel.tiles(lanes)[0]
    digest = hashlib.sha256(repr((kernel.key(), tile, threads, PART_FLOATS, describe(target),
                                  SCHEDULE_VERSION, tvm.__version__)).encode()).hexdigest()
    libraries = LibraryCache(cache.folder_beside("libraries"))
    module = libraries.load(digest)
    if module is None:
        functions = functions_module({"check": (kernel, tile)})
        for name, function in passing_functions(threads, lanes).items():
            functions[name] = function.with_attr("global_symbol", name)
        module = tvm.compile(functions, target=target)
        libraries.store(digest, module.export_library)
        module = libraries.load(digest) or module
    check = [(module["check"], kernel_arguments(kernel))]
    rng = np.random.default_rng(0)
    x, y, z = (tvm.runtime.tensor(rng.standard_normal((threads, PART_FLOATS))
                                  .astype("float32")) for _ in range(3))
    return {"tvm": _Calls(check, threads), "tvm_1": _Calls(check, 1),
            **{read: _Calls([(module["write"], (x, y)), (module[read], (y, z))], threads,
                            PASSES) for read in ("own", "passed")}}


def figures(times):
    """The check's figures from the milliseconds of its runners in the same rounds
    (``times``: runner name, as :func:`scaling_check` names them, -> ms per round):
    ``{"scaling": the compute-bound check's 1 -> N thread scaling
    (:func:`~octconv.deploy.bench.thread_scaling`), "passing": the data-passing figure
    (:func:`~octconv.deploy.bench.passing_cost`)}``."""
    from octconv.deploy.bench import passing_cost, thread_scaling  # (bench loads MXNet)
    return {"scaling": thread_scaling(times["tvm_1"], times["tvm"]),
            "passing": passing_cost(times["own"], times["passed"])}
