"""The thread count of TVM's runtime thread pool.

TVM sizes its pool once, from ``TVM_NUM_THREADS`` (else half the logical CPUs on x86),
when the first parallel kernel runs; ``runtime.config_threadpool`` then chooses how
many of those workers a parallel loop uses. :func:`use_threads` sizes the pool for
every core this process may run on and switches the count when it changes, so one
process can time the same library at 1 and at 2 threads.
"""
import os

import tvm

__all__ = ["available_cores", "resolve_threads", "use_threads"]

_current = None


def available_cores():
    """The cores this process may run on (its CPU affinity)."""
    return len(os.sched_getaffinity(0))


def resolve_threads(threads):
    """``threads`` as a count: 0 means every available core; negative is an error."""
    threads = int(threads)
    if threads < 0:
        raise ValueError(f"threads must be 0 (all cores) or a positive count, got {threads}")
    return threads or available_cores()


def use_threads(threads):
    """Make TVM's parallel loops use ``threads`` workers (0: all cores)."""
    global _current
    threads = resolve_threads(threads)
    if threads == _current:
        return
    if _current is None:  # the pool is created by the first configuration: make it wide
        os.environ["TVM_NUM_THREADS"] = str(max(available_cores(), threads))
    tvm.get_global_func("runtime.config_threadpool")(1, threads)
    got = tvm.get_global_func("runtime.NumThreads")()
    if got != threads:
        raise RuntimeError(f"TVM's thread pool runs {got} threads, not {threads} (it was "
                           f"started before octconv could size it; set TVM_NUM_THREADS="
                           f"{threads} or more before the first TVM call)")
    _current = threads
