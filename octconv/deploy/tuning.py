"""Per-workload choice of a kernel's register tile, measured and cached on disk.

A kernel offers candidate tiles best-guess first (:meth:`Conv.tiles`); the search
builds the first ``budget`` of them on the kernel's tuning workload (batch 1 unless
its data outgrow the cache or batch 1 offers other candidates, no epilogue inputs:
:func:`tuning_workload`) as
stand-alone functions, times each on random inputs (single thread, median of 5
repeats; with its weights flushed from the caches before each call where they
outweigh its input, as inside a network: :func:`~octconv.deploy.kernels.weight_bound`)
and keeps the fastest.
Results are stored in a JSON file ``{target: {workload key: {"tile": ..., "ms":
...}}}`` (other measurements of a target, such as
:mod:`octconv.deploy.algorithms`' choices, as ``{key: {"value": ...}}``), written atomically,
and serve every thread count and epilogue of that workload, and every batch size that
tunes to it. Processes sharing the file (compiles run side by side) keep each other's
records: a save merges into what the file holds by then, under a lock.
A cache file that cannot be read is ignored with a warning. For a target
that cannot run on this machine (cross-compiling) nothing is measured: the best-guess
tile is used and not cached. The searches of a whole network build their candidates
in parallel processes (:func:`search_tiles`).
"""
import fcntl
import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import tvm
from tvm import s_tir, te

from octconv.deploy import builders
from octconv.deploy.kernels import weight_bound
from octconv.deploy.target import describe, runs_here
from octconv.deploy.threads import available_cores, use_threads
from octconv.files import write_atomically

__all__ = ["TileCache", "scheduled_func", "functions_module", "build_here",
           "build_in_processes", "choose_tile", "search_tiles", "default_cache_path",
           "schedule_digest", "kernel_arguments", "time_function", "time_cold",
           "tuning_workload", "SCHEDULE_VERSION"]


SCHEDULE_SOURCES = ("kernels.py", "winograd.py", "tuning.py")


def schedule_digest(folder=os.path.dirname(os.path.abspath(__file__))):
    """A digest of the code that computes and schedules the kernels (the
    :data:`SCHEDULE_SOURCES` in ``folder``): the version under which tile records and
    compiled libraries are kept, so that any edit of that code makes them unused
    instead of reused with another schedule."""
    digest = hashlib.sha256()
    for name in SCHEDULE_SOURCES:
        with open(os.path.join(folder, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:12]


SCHEDULE_VERSION = schedule_digest()


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
        self._put = set()  # (target name, key) of the records put since opening
        if os.path.exists(self.path):
            try:
                self.records = _read_records(self.path)
            except (OSError, ValueError) as err:
                warnings.warn(f"ignoring the unreadable TVM tuning cache {self.path} "
                              f"({err}); it will be rewritten", RuntimeWarning)

    def folder_beside(self, name):
        """The folder ``name`` beside this file, where what is kept with the tuning
        records lives: compiled libraries (``libraries``), ONNX exports (``onnx``)."""
        return os.path.join(os.path.dirname(os.path.abspath(self.path)), name)

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
        self._store(describe(target), key, {"tile": tile, "ms": ms})

    def value(self, target, key):
        """A measurement recorded under ``key`` (:meth:`put_value`): a number or a name,
        or None."""
        record = self.records.get(describe(target), {}).get(key)
        value = record.get("value") if isinstance(record, dict) else None
        return value if isinstance(value, (int, float, str)) and not isinstance(value, bool) \
            else None

    def put_value(self, target, key, value):
        self._store(describe(target), key, {"value": value})

    def _store(self, name, key, record):
        self.records.setdefault(name, {})[key] = record
        self._put.add((name, key))

    def save(self):
        """Write the records, merged under a lock into those the file holds now (another
        process may have saved its searches since this one read it): the records put
        here replace the file's, those read at opening fill only what the file lacks. A
        file unreadable by now is replaced."""
        def dump(tmp):
            with open(tmp, "w") as f:
                json.dump(self.records, f, indent=0, sort_keys=True)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            try:
                merged = _read_records(self.path)
            except (OSError, ValueError):
                merged = {}
            for name, records in self.records.items():
                if not isinstance(merged.get(name), dict):
                    merged[name] = {}
                for key, record in records.items():
                    if (name, key) in self._put or key not in merged[name]:
                        merged[name][key] = record
            self.records = merged
            write_atomically(self.path, dump)


def _read_records(path):
    """The records of a cache file (ValueError if it is not a JSON object)."""
    with open(path) as f:
        records = json.load(f)
    if not isinstance(records, dict):
        raise ValueError("top level is not an object")
    return records


def scheduled_func(kernel, tile):
    """The kernel's PrimFunc, scheduled with ``tile``."""
    inputs, output = kernel.compute_for(tile)
    sch = s_tir.Schedule(te.create_prim_func(inputs + [output]))
    kernel.schedule(sch, tile)
    return sch.mod["main"].with_attr("tir.is_scheduled", True)


def functions_module(functions):
    """An IRModule of the kernels ``functions`` (name -> (kernel, tile)), each scheduled
    with its tile under its name."""
    return tvm.IRModule({name: scheduled_func(kernel, tile).with_attr("global_symbol", name)
                         for name, (kernel, tile) in functions.items()})


def _candidates(kernel, tiles):
    """A search's functions: the kernel with each tile, as ``tile0``, ``tile1``, ..."""
    return {f"tile{j}": (kernel, tile) for j, tile in enumerate(tiles)}


def kernel_arguments(kernel):
    """Random arrays of the shapes of ``kernel``'s inputs and output: the arguments of
    its compiled function."""
    rng = np.random.default_rng(0)
    inputs, output = kernel.compute()
    return [tvm.runtime.tensor(rng.standard_normal([int(d) for d in t.shape])
                               .astype("float32"), tvm.cpu()) for t in inputs + [output]]


def time_function(module, name, args, repeat=5):
    """Milliseconds per call of the compiled function ``name`` of ``module`` (or of a
    module it imports, as a network's library does its kernels) on ``args``, called
    again and again on the current thread count: the median of ``repeat`` timings of
    at least 2 ms each."""
    library = next(m for m in (module, *module.imports) if m.implements_function(name))
    timer = library.time_evaluator(name, tvm.cpu(), number=2, repeat=repeat, min_repeat_ms=2)
    return float(np.median(timer(*args).results) * 1e3)


def time_cold(module, name, args, repeat=15):
    """Milliseconds per call of the compiled function ``name`` of ``module`` on ``args``
    with every argument but the first flushed from the CPU caches before each call (the
    median of ``repeat`` calls on the current thread count): a kernel of a network
    finds its input where the previous kernel left it, but its weights, read once per
    call, out of cache (a ResNet-50's 100-160 MB of them exceed what the caches keep
    between two calls)."""
    library = next(m for m in (module, *module.imports) if m.implements_function(name))
    timer = library.time_evaluator(name, tvm.cpu(), number=1, repeat=repeat,
                                   f_preproc="cache_flush_cpu_non_first_arg")
    return float(np.median(timer(*args).results) * 1e3)


def _time_module(module, kernel, count):
    """Milliseconds per call of ``tile0`` ... ``tile{count-1}`` of ``module`` on random
    inputs of the kernel's shapes, on one thread: with the weights flushed from the
    caches before each call where they outweigh the input (:func:`~.kernels.weight_bound`), else
    called again and again."""
    use_threads(1)
    args = kernel_arguments(kernel)
    timer = time_cold if weight_bound(kernel) else time_function
    return [timer(module, f"tile{j}", args) for j in range(count)]


def build_here(functions, target):
    """The loaded library of ``functions`` (:func:`functions_module`) for ``target``,
    built in this process."""
    library = tvm.compile(functions_module(functions), target=target)
    return library.jit() if hasattr(library, "jit") else library


def _build_library(functions, target_json, path):
    """A library of ``functions`` (:func:`functions_module`) for a target (its JSON,
    ``str(target)``), written to ``path`` (a task of a build process)."""
    tvm.compile(functions_module(functions), target=tvm.target.Target(target_json)
                ).export_library(path)


def build_in_processes(libraries, target, folder, jobs=0):
    """Build each library of ``libraries`` (a list of ``functions``, see
    :func:`functions_module`) for ``target``, the very target and not one remade from
    its CPU name, in ``folder``, in ``jobs`` build processes (0: one per core;
    :mod:`octconv.deploy.builders`); their paths, or None with a warning when a build
    failed."""
    paths = [os.path.join(folder, f"{j}.so") for j in range(len(libraries))]
    if builders.run([("octconv.deploy.tuning", "_build_library", (functions, str(target),
                                                                   path))
                     for functions, path in zip(libraries, paths)], jobs):
        return paths
    warnings.warn("a kernel build process failed; building in this process instead",
                  RuntimeWarning)
    return None


class _Search(NamedTuple):
    key: str
    workload: object
    tiles: list


def tuning_workload(kernel, lanes):
    """The kernel whose timing chooses ``kernel``'s tile: :meth:`Kernel.workload
    <octconv.deploy.kernels.Kernel.workload>` (often at batch 1, one search for every
    batch), at the kernel's own batch where the workload's batch would offer other
    candidate tiles than the kernel's, whose search would not stand for it. So it is
    for a 1x1 layer that streams its weights at batch 1 only
    (:attr:`~octconv.deploy.kernels.Conv.streams_weights`): the 5-pixel tiles chosen at
    batch 1 ran MobileNet v2 1.0 and its Oct network at batch 8 in 1.03 x the time (2
    threads, results/NOTES.md, stop 60)."""
    workload = kernel.workload()
    if workload.data[0] == kernel.data[0]:
        return workload
    own = replace(workload, data=tuple(kernel.data))
    return own if own.tiles(lanes) != workload.tiles(lanes) else workload


def _lookup(kernel, target, lanes, cache, budget):
    """The kernel's tile when no search is needed (a single candidate, a cached
    record, or nothing can be timed here), else the search to run."""
    candidates = kernel.tiles(lanes)
    if len(candidates) == 1:
        return candidates[0]
    workload = tuning_workload(kernel, lanes)
    key = f"v{SCHEDULE_VERSION} {workload.key()}"
    cached = cache.get(target, key)
    if cached is not None and cached in candidates:
        return candidates[candidates.index(cached)]  # the named tile, not the stored list
    if not runs_here(target) or budget <= 1:
        return candidates[0]
    return _Search(key, workload, candidates[:budget])


def _record(search, times, target, cache):
    """Record the fastest of the search's tiles; return it."""
    ms, best = min(zip(times, search.tiles))
    cache.searches += 1
    cache.put(target, search.key, list(best), ms)
    return best


def choose_tile(kernel, target, lanes, cache, budget=4):
    """The kernel's tile on ``target``: from ``cache``, else searched over ``budget``
    candidates (built here: :func:`search_tiles` with one job) and recorded."""
    found = _lookup(kernel, target, lanes, cache, budget)
    if isinstance(found, _Search):
        search_tiles([kernel], target, lanes, cache, budget, jobs=1)
        found = _lookup(kernel, target, lanes, cache, budget)
    return found


def search_tiles(kernels, target, lanes, cache, budget=4, jobs=0):
    """Run the searches :func:`choose_tile` would run for ``kernels``, with the
    candidates' LLVM builds (about two thirds of a search) in ``jobs`` processes at once
    (0: one per core). The workloads are timed in this process after every build has
    finished, one at a time and as :func:`choose_tile` times them, so that no build
    competes with a timing. With one job, or one search to run, each search's
    candidates are built in this process (as :func:`choose_tile` searches).

    Returns ``{workload key: (module, name)}`` for the workloads searched here: the
    loaded library of their candidates and the name of the recorded tile's function in
    it, for a caller that times the winners again (:mod:`octconv.deploy.algorithms`).
    After a failed build process nothing is searched (:func:`choose_tile` searches)."""
    searches = {}
    for kernel in kernels:
        found = _lookup(kernel, target, lanes, cache, budget)
        if isinstance(found, _Search):
            searches[found.key] = found
    searches = list(searches.values())
    jobs = min(jobs or available_cores(), len(searches))
    searched = {}
    with tempfile.TemporaryDirectory() as folder:
        if jobs > 1:
            paths = build_in_processes([_candidates(s.workload, s.tiles) for s in searches],
                                       target, folder, jobs)
            modules = (tvm.runtime.load_module(path) for path in paths or [])
        else:
            modules = (build_here(_candidates(s.workload, s.tiles), target) for s in searches)
        for search, module in zip(searches, modules):
            best = _record(search, _time_module(module, search.workload, len(search.tiles)),
                           target, cache)
            searched[search.workload.key()] = (module, f"tile{search.tiles.index(best)}")
    return searched
