"""Files written so that a reader never sees half of one, and no half-written file is
left behind.

A temporary file is named ``.<name>.<pid>-<random>.tmp<suffix>`` beside its target, so
the process that wrote it can be told from its name: one killed mid-write leaves it,
and the next writer in that folder removes it (:func:`remove_orphans`).
"""
import glob
import os
import re
import secrets

__all__ = ["write_atomically", "remove_orphans", "process_running"]

_TEMPORARY = re.compile(r"^\..+\.(\d+)-[^.]+\.tmp")


def write_atomically(path, write, suffix=""):
    """Call ``write(temporary path)`` in ``path``'s folder, then rename the result onto
    ``path``; on failure the temporary file is removed and ``path`` is untouched.
    ``suffix`` ends the temporary name, for writers that pick a format by extension.
    Orphans of killed writers in that folder are removed first."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_orphans(folder)
    tmp = _create_temporary(folder, os.path.basename(path), suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _create_temporary(folder, name, suffix):
    """Create an empty temporary file for ``name`` in ``folder`` and return its path.
    It gets the permissions of any new file (0666 less the umask; ``tempfile.mkstemp``
    gives the owner alone access, and a writer that reopens the file keeps them), so
    that a checkpoint or a library is readable by whoever may read its folder."""
    while True:
        tmp = os.path.join(folder, f".{name}.{os.getpid()}-{secrets.token_hex(6)}.tmp{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def remove_orphans(folder):
    """Remove the temporary files of :func:`write_atomically` in ``folder`` whose writing
    process no longer runs."""
    for path in glob.glob(os.path.join(glob.escape(folder), ".*.tmp*")):
        found = _TEMPORARY.match(os.path.basename(path))
        if found and not process_running(int(found.group(1))):
            try:
                os.remove(path)
            except FileNotFoundError:  # another writer removed it first
                pass


def process_running(pid):
    """Whether process ``pid`` exists and has not ended. A zombie (ended, not yet reaped
    by its parent, as in a container whose first process reaps nothing) has ended; where
    /proc is missing, a process that exists counts as running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    if not os.path.isdir("/proc/self"):
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:  # ended meanwhile
        return False
    return state not in ("Z", "X")  # zombie, dead
