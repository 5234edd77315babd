"""Per-workload choice of a kernel's register tile, measured and cached on disk.

A kernel offers candidate tiles best-guess first (:meth:`Conv.tiles`); the search
builds the first ``budget`` of them on the kernel's tuning workload (batch 1, no
epilogue inputs: :meth:`Kernel.workload`) as stand-alone functions, times each on
random inputs (single thread, median of 5 repeats) and keeps the fastest. Results are
stored in a JSON file ``{target: {workload key: {"tile": ..., "ms": ...}}}``, written
atomically, and serve every batch size, thread count and epilogue of that workload.
A cache file that cannot be read is ignored with a warning. For a target
that cannot run on this machine (cross-compiling) nothing is measured: the best-guess
tile is used and not cached.
"""
import json
import os
import warnings

import numpy as np
import tvm
from tvm import s_tir, te

from octconv.deploy.target import describe, runs_here
from octconv.deploy.threads import use_threads
from octconv.files import write_atomically

__all__ = ["TileCache", "scheduled_func", "choose_tile", "default_cache_path"]


# bumped whenever a kernel's schedule changes, so that older records are not reused
SCHEDULE_VERSION = 3


def default_cache_path():
    """``$OCTCONV_TVM_CACHE`` or ``~/.cache/octconv/tvm_tiles.json``."""
    return os.environ.get("OCTCONV_TVM_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "octconv",
                                       "tvm_tiles.json"))


class TileCache:
    """The tuning records of one file; ``searches`` counts the searches run since it
    was opened (0 on a fully cached compile)."""

    def __init__(self, path=None):
        self.path = path or default_cache_path()
        self.searches = 0
        self.records = {}
        if os.path.exists(self.path):
            try:
                with open(self.path) as f:
                    records = json.load(f)
                if not isinstance(records, dict):
                    raise ValueError("top level is not an object")
                self.records = records
            except (OSError, ValueError) as err:
                warnings.warn(f"ignoring the unreadable TVM tuning cache {self.path} "
                              f"({err}); it will be rewritten", RuntimeWarning)

    def library_folder(self):
        """Where compiled libraries are kept beside this file (``libraries/``)."""
        return os.path.join(os.path.dirname(os.path.abspath(self.path)), "libraries")

    def get(self, target, key):
        record = self.records.get(describe(target), {}).get(key)
        if not isinstance(record, dict) or "tile" not in record:
            return None
        tile = record["tile"]
        return tuple(tile) if isinstance(tile, list) else tile

    def usable(self, target):
        """How many records of ``target`` (a target or its description) this schedule
        version can use."""
        name = target if isinstance(target, str) else describe(target)
        return sum(key.startswith(f"v{SCHEDULE_VERSION} ") for key in self.records.get(name, {}))

    def put(self, target, key, tile, ms):
        self.records.setdefault(describe(target), {})[key] = {"tile": tile, "ms": ms}

    def save(self):
        def dump(tmp):
            with open(tmp, "w") as f:
                json.dump(self.records, f, indent=0, sort_keys=True)
        write_atomically(self.path, dump)


def scheduled_func(kernel, tile):
    """The kernel's PrimFunc, scheduled with ``tile``."""
    inputs, output = kernel.compute()
    sch = s_tir.Schedule(te.create_prim_func(inputs + [output]))
    kernel.schedule(sch, tile)
    return sch.mod["main"].with_attr("tir.is_scheduled", True)


def _time_candidates(kernel, tiles, target):
    """Milliseconds per call of the kernel scheduled with each tile (one LLVM build)."""
    mod = tvm.IRModule({f"tile{j}": scheduled_func(kernel, tile).with_attr(
        "global_symbol", f"tile{j}") for j, tile in enumerate(tiles)})
    lib = tvm.compile(mod, target=target)
    module = lib.jit() if hasattr(lib, "jit") else lib
    dev = tvm.cpu()
    use_threads(1)
    rng = np.random.default_rng(0)
    inputs, output = kernel.compute()
    args = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in t.shape])
                               .astype("float32"), dev) for t in inputs + [output]]
    times = []
    for j in range(len(tiles)):
        timer = module.time_evaluator(f"tile{j}", dev, number=2, repeat=5, min_repeat_ms=2)
        times.append(float(np.median(timer(*args).results) * 1e3))
    return times


def choose_tile(kernel, target, lanes, cache, budget=4):
    """The kernel's tile on ``target``: from ``cache``, else searched over ``budget``
    candidates and recorded."""
    candidates = kernel.tiles(lanes)
    if len(candidates) == 1:
        return candidates[0]
    workload = kernel.workload()
    key = f"v{SCHEDULE_VERSION} {workload.key()}"
    cached = cache.get(target, key)
    if cached is not None and cached in candidates:
        return candidates[candidates.index(cached)]  # the named tile, not the stored list
    if not runs_here(target) or budget <= 1:
        return candidates[0]
    cache.searches += 1
    tiles = candidates[:budget]
    ms, best = min(zip(_time_candidates(workload, tiles, target), tiles))
    cache.put(target, key, list(best), ms)
    return best
