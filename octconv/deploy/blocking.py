"""How much an 8-channel block costs against a 16-channel one on an AVX-512 target,
measured once per target and kept in the tuning cache.

The channel blocking of a network (:meth:`octconv.deploy.kernels.Layout.for_channels`)
weighs padding against vector width: a 56-channel map is either 7 blocks of 8
(unpadded, half-width vectors) or 4 blocks of 16 (64 channels, full-width vectors).
Which is faster depends on the core. On an AVX-512 AMD Zen 4, which executes
512-bit instructions as two 256-bit halves, blocks of 8 ran the Oct-MobileNets'
branches of 18 and 36 channels faster than blocks of 16 padded to 32 and 48; on an
Intel Xeon with two full-width FMA units an 8-lane instruction does half the work of a
16-lane one in the same time. The probe is a 1x1 convolution of 64 -> 64 channels on a
56 px map (OctConv's first ResNet stage) in blocks of 8 and of 16, each with its
searched tile; the cost is the ratio of their times (about 1.7 on such a Xeon, where
1x1 and 3x3 convolutions of 64-128 channels on 28-56 px maps gave 1.5-1.75).
"""
import numpy as np
import tvm

from octconv.deploy.kernels import NARROW_COST, Conv, Epilogue
from octconv.deploy.target import runs_here, vector_lanes
from octconv.deploy.threads import use_threads
from octconv.deploy.tuning import SCHEDULE_VERSION, choose_tile, kernel_arguments, \
    scheduled_func, time_function

__all__ = ["narrow_block_cost", "probe", "record_key"]


def probe(block):
    """The probe convolution in blocks of ``block`` channels."""
    return Conv((1, 64 // block, 56, 56, block), 64 // block, block, 64 // block, 1, 1, 1, 0,
                Epilogue((("bias",),)))


def record_key():
    """The tuning-cache key of the measured cost: the schedule version and the probe."""
    return f"v{SCHEDULE_VERSION} narrow-block-cost {probe(8).key()}"


def narrow_block_cost(target, cache, budget=4):
    """The time per multiply-add of 8-channel blocks over 16-channel ones on
    ``target``: 1.0 on 8-lane (AVX2) targets, which block by 8 anyway; else the value
    recorded in ``cache``, or measured and recorded when ``budget`` (tiles searched per
    workload, as for the network's kernels) is above 1 and the target runs here: the
    probe in both blockings with searched tiles, alternately timed on one thread
    (median of 5 pairs); else :data:`~octconv.deploy.kernels.NARROW_COST`."""
    if vector_lanes(target) == 8:
        return 1.0
    cached = cache.value(target, record_key())
    if cached is not None and cached > 0:
        return float(cached)
    if budget <= 1 or not runs_here(target):
        return NARROW_COST
    kernels = [probe(8), probe(16)]
    funcs = {f"block{k.data[4]}": scheduled_func(k, choose_tile(k, target, 16, cache, budget))
             .with_attr("global_symbol", f"block{k.data[4]}") for k in kernels}
    library = tvm.compile(tvm.IRModule(funcs), target=target)
    library = library.jit() if hasattr(library, "jit") else library
    args = {name: kernel_arguments(k) for name, k in zip(funcs, kernels)}
    use_threads(1)
    ratios = [time_function(library, "block8", args["block8"]) /
              time_function(library, "block16", args["block16"]) for _ in range(5)]
    cost = round(float(np.median(ratios)), 3)
    cache.put_value(target, record_key(), cost)
    cache.save()
    return cost
