"""How much of several cores the machine gives: a compute-bound kernel timed on one
thread and on N, in the same timing loop as the networks.

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
the machine allowed a kernel that needs nothing from it but cores. Its threads share no
data, so it does not see a machine that passes data between its cores slowly, which
slows a network, whose threads hand each other their maps at every layer (measured:
results/NOTES.md, stop 46).
"""
import hashlib

import tvm

from octconv.deploy.kernels import Conv, Epilogue
from octconv.deploy.libraries import LibraryCache
from octconv.deploy.target import describe, vector_lanes
from octconv.deploy.threads import resolve_threads, use_threads
from octconv.deploy.tuning import SCHEDULE_VERSION, functions_module, kernel_arguments

__all__ = ["check_kernel", "scaling_check", "DESCRIPTION"]

IMAGES, CHANNELS, SIDE = 8, 64, 28
DESCRIPTION = (f"a compute-bound 3x3 convolution ({IMAGES} images, {CHANNELS} channels, "
               f"{SIDE} px, in each core's L2 cache) timed on 1 and on N threads in the "
               "rounds of each group timed on N > 1 threads: how far the machine let a kernel "
               "scale whose threads share no data (it does not see a slow passage of data "
               "between cores)")


def check_kernel(lanes):
    """The check's convolution in blocks of ``lanes`` channels (the target's vector)."""
    blocks = CHANNELS // lanes
    return Conv((IMAGES, blocks, SIDE, SIDE, lanes), blocks, lanes, blocks, 1, 3, 1, 1,
                Epilogue((("bias",),)))


class _Call:
    """A runner for :func:`~octconv.deploy.bench.interleave`: one call of the check on
    ``threads`` threads; :meth:`prepare` switches TVM's pool to them and says whether
    it did (as :class:`~octconv.deploy.bench.TVMRunner`'s does)."""

    def __init__(self, function, args, threads):
        self.function, self.args, self.threads = function, args, threads

    def prepare(self):
        return use_threads(self.threads)

    def __call__(self):
        self.function(*self.args)


def scaling_check(threads, target, cache):
    """``{"tvm": the check on threads (0: all cores), "tvm_1": the check on one}``,
    runners of random arrays for ``target`` (which must run here). Its library is kept
    among the compiled libraries beside ``cache`` (a
    :class:`~octconv.deploy.tuning.TileCache`), named by the kernel, tile, target and
    code, so a second run builds nothing."""
    lanes = vector_lanes(target)
    kernel = check_kernel(lanes)
    tile = kernel.tiles(lanes)[0]
    digest = hashlib.sha256(repr((kernel.key(), tile, describe(target), SCHEDULE_VERSION,
                                  tvm.__version__)).encode()).hexdigest()
    libraries = LibraryCache(cache.folder_beside("libraries"))
    module = libraries.load(digest)
    if module is None:
        module = tvm.compile(functions_module({"check": (kernel, tile)}), target=target)
        libraries.store(digest, module.export_library)
        module = libraries.load(digest) or module
    function = module["check"]
    args = kernel_arguments(kernel)
    return {"tvm": _Call(function, args, resolve_threads(threads)),
            "tvm_1": _Call(function, args, 1)}
