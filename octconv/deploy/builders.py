"""Build processes, started on first use and kept until this process exits, so that
LLVM builds (a tile search's candidates, the kernels of a network's library) run on
every core without paying a Python start and TVM import (about 1.6 s here) each time.

Each is a fresh Python, not a fork (which could inherit locks held by this process's
threads) nor multiprocessing's spawn (which would run the caller's script again),
started with this process's module path. For each task file whose path it reads on its
standard input it calls every ``module.function(*args)`` listed there and answers
``ok`` or ``failed`` on a pipe of its own (what the builds print goes to standard
error). A process that failed or died is replaced at the next use; when this process
ends, its build processes read the end of their input and exit.
"""
import atexit
import os
import pickle
import subprocess
import sys
import tempfile

from octconv.deploy.threads import available_cores

__all__ = ["Batch", "start", "run", "close"]

_PROCESS = """\
import importlib, os, pickle, sys, traceback
sys.path[:] = pickle.loads(bytes.fromhex(sys.argv[1]))
reply = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
for line in sys.stdin:
    try:
        with open(line.strip(), "rb") as f:
            for module, function, args in pickle.load(f):
                getattr(importlib.import_module(module), function)(*args)
        reply.write("ok\\n")
    except Exception:
        traceback.print_exc()
        reply.write("failed\\n")
    reply.flush()
"""

_processes = []


def _started(count):
    """The first ``count`` build processes, starting those missing."""
    while len(_processes) < count:
        _processes.append(subprocess.Popen(
            [sys.executable, "-c", _PROCESS, pickle.dumps(sys.path).hex()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    return _processes[:count]


class Batch:
    """Tasks handed to build processes; :meth:`wait` for their outcome."""

    def __init__(self, tasks, jobs):
        self._folder = tempfile.TemporaryDirectory()
        self._sent = []
        parts = [tasks[part::jobs] for part in range(jobs)]
        for part, process in zip((p for p in parts if p), _started(jobs)):
            path = os.path.join(self._folder.name, f"tasks{len(self._sent)}.pickle")
            with open(path, "wb") as f:
                pickle.dump(part, f)
            try:
                process.stdin.write(path + "\n")
                process.stdin.flush()
            except OSError:  # the process has died
                process = None
            self._sent.append(process)

    def wait(self):
        """True when every task ran without an error; otherwise the build processes are
        closed (replaced at the next use) and False."""
        replies = [process.stdout.readline().strip() if process else ""
                   for process in self._sent]
        self._folder.cleanup()
        if all(reply == "ok" for reply in replies):
            return True
        close()
        return False


def start(tasks, jobs=0):
    """Hand ``tasks`` (``(module name, function name, args)``, picklable) to ``jobs``
    build processes (0: one per core), the i-th task to process i mod ``jobs``; the
    :class:`Batch` to wait for."""
    return Batch(list(tasks), jobs or available_cores())


def run(tasks, jobs=0):
    """:func:`start` the tasks and wait: True when every one ran without an error."""
    return start(tasks, jobs).wait()


@atexit.register
def close():
    """End the build processes (each finishes its current task first)."""
    while _processes:
        process = _processes.pop()
        try:
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
