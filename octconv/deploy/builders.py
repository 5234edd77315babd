"""Build processes, started on first use and kept until this process exits, so that
LLVM builds (a tile search's candidates, the kernels of a network's library) run on
every core without paying a Python start and TVM import (about 1.6 s here) each time.

Each is a fresh Python, not a fork (which could inherit locks held by this process's
threads) nor multiprocessing's spawn (which would run the caller's script again). For
each task file whose path it reads on its standard input it takes this process's
module path of that moment (so a folder added to ``sys.path`` after the start is seen),
calls ``module.function(*args)`` as the file says and answers ``ok`` or ``failed`` on
a pipe of its own (what the builds print goes to standard error).
Tasks go one at a time to whichever process is free, so builds of unequal length
(a Winograd kernel's candidates take several times a 1x1 convolution's) keep every
process busy to the end. A process that failed or died is replaced at the next use;
when this process ends, its build processes read the end of their input and exit.
"""
import atexit
import os
import pickle
import select
import subprocess
import sys
import tempfile

from octconv.deploy.threads import available_cores

__all__ = ["parts", "run", "close"]

_PROCESS = """\
import importlib, os, pickle, sys, traceback
reply = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
for line in sys.stdin:
    try:
        with open(line.strip(), "rb") as f:
            sys.path[:], module, function, args = pickle.load(f)
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
            [sys.executable, "-c", _PROCESS],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    return _processes[:count]


def _send(process, path):
    """Hand the task file ``path`` to ``process``; False if it has died."""
    try:
        process.stdin.write(path + "\n")
        process.stdin.flush()
        return True
    except OSError:
        return False


def parts(items):
    """``items`` dealt out in turn into one part per build process (one per core, fewer
    when there are fewer items): the pieces of one build that runs on every core."""
    count = min(available_cores(), len(items))
    return [items[part::count] for part in range(count)]


def run(tasks, jobs=0):
    """Run ``tasks`` (``(module name, function name, args)``, picklable) in ``jobs``
    build processes (0: one per core), each task in the first process free. True when
    every task ran without an error; otherwise the build processes are closed (replaced
    at the next use) and False, once the tasks already handed out have ended."""
    tasks = list(tasks)
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for j, task in enumerate(tasks):
            paths.append(os.path.join(folder, f"task{j}.pickle"))
            with open(paths[-1], "wb") as f:
                pickle.dump((sys.path, *task), f)
        waiting = list(reversed(paths))
        busy = []
        for process in _started(min(jobs or available_cores(), len(tasks))):
            if _send(process, waiting.pop()):
                busy.append(process)
            else:
                ok = False
        while busy:
            ready, _, _ = select.select([p.stdout for p in busy], [], [])
            for process in [p for p in busy if p.stdout in ready]:
                busy.remove(process)
                if process.stdout.readline().strip() != "ok":
                    ok = False
                elif ok and waiting:
                    if _send(process, waiting.pop()):
                        busy.append(process)
                    else:
                        ok = False
    if not ok:
        close()
    return ok


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
