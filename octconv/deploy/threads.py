"""The thread count of TVM's runtime thread pool.

TVM sizes its pool once, from ``TVM_NUM_THREADS`` (else half the logical CPUs on x86),
when the first parallel kernel runs; ``runtime.config_threadpool`` then chooses how many
of those workers a parallel loop uses, at most the pool's size. :func:`use_threads`
sizes the pool for every core this process may run on, or for more threads if
:func:`reserve_threads` asked for them before (a compile does, before its tile search
times kernels on one thread), by setting ``TVM_NUM_THREADS`` (a value the environment
gave is replaced: the thread count is chosen per call, ``threads=`` or ``--threads``),
and switches the count when it changes, so one process can time the same library at 1
and at 2 threads. TVM keeps one pool per calling thread, so the count is set, and
switched, for each thread that runs a library.

After a parallel loop TVM's workers spin, waiting for the next one, for
``TVM_THREAD_POOL_SPIN_COUNT`` yields before they sleep. TVM's default (300000) kept a
worker spinning for about 160 ms after each network call on this project's 2-core
machine, a core taken from anything else the process or machine runs; the gaps
between the kernels of one call are microseconds. Unless the environment sets it,
:func:`use_threads` sets it to :data:`SPIN_COUNT` (about 5 ms of spinning there),
which ran ResNet-50 and MobileNet v1 on two threads as fast as the default.
"""
import os
import threading

import tvm

__all__ = ["available_cores", "resolve_threads", "reserve_threads", "use_threads",
           "SPIN_COUNT"]

SPIN_COUNT = 10000

_calling = threading.local()  # .count: the workers this thread's pool uses, once set
_reserved = 0
_sized = False  # whether the pools' size is set (TVM reads it as each pool is created)


def available_cores():
    """The cores this process may run on (its CPU affinity)."""
    return len(os.sched_getaffinity(0))


def resolve_threads(threads):
    """``threads`` as a count: 0 means every available core; negative is an error."""
    threads = int(threads)
    if threads < 0:
        raise ValueError(f"threads must be 0 (all cores) or a positive count, got {threads}")
    return threads or available_cores()


def reserve_threads(threads):
    """Have TVM's pool, when it starts, hold workers for ``threads`` threads (0: all
    cores) even if they outnumber the cores. No effect once the pool has started."""
    global _reserved
    _reserved = max(_reserved, resolve_threads(threads))


def use_threads(threads):
    """Make TVM's parallel loops use ``threads`` workers (0: all cores). Returns
    whether the count changed: the pool then restarts its workers, which the next
    parallel loop waits for."""
    global _sized
    threads = resolve_threads(threads)
    if threads == getattr(_calling, "count", None):
        return False
    if not _sized:  # a pool is created by its first configuration: make them wide
        os.environ["TVM_NUM_THREADS"] = str(max(available_cores(), threads, _reserved))
        os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", str(SPIN_COUNT))
        _sized = True
    tvm.get_global_func("runtime.config_threadpool")(1, threads)
    got = tvm.get_global_func("runtime.NumThreads")()
    _calling.count = got  # (fewer than asked only when the pool is too small)
    if got != threads:
        raise ValueError(f"TVM's thread pool in this process runs at most {got} threads, "
                         f"not {threads}: it was sized when the process first ran TVM "
                         f"(compile for {threads} threads before anything else, or set "
                         f"TVM_NUM_THREADS={threads} before the process starts TVM)")
    return True
