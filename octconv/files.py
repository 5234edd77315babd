"""Files written so that a reader never sees half of one, and no half-written file is
left behind.

A temporary file is named ``.<name>.<pid>-<random>.tmp<suffix>`` beside its target, so
the process that wrote it can be told from its name: one killed mid-write leaves it,
and the next writer in that folder removes it (:func:`remove_orphans`).
"""
import glob
import os
import re
import tempfile

__all__ = ["write_atomically", "remove_orphans"]

_TEMPORARY = re.compile(r"^\..+\.(\d+)-[^.]+\.tmp")


def write_atomically(path, write, suffix=""):
    """Call ``write(temporary path)`` in ``path``'s folder, then rename the result onto
    ``path``; on failure the temporary file is removed and ``path`` is untouched.
    ``suffix`` ends the temporary name, for writers that pick a format by extension.
    Orphans of killed writers in that folder are removed first."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_orphans(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.{os.getpid()}-",
                               suffix=".tmp" + suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_orphans(folder):
    """Remove the temporary files of :func:`write_atomically` in ``folder`` whose writing
    process no longer runs."""
    for path in glob.glob(os.path.join(glob.escape(folder), ".*.tmp*")):
        found = _TEMPORARY.match(os.path.basename(path))
        if found and not _running(int(found.group(1))):
            try:
                os.remove(path)
            except FileNotFoundError:  # another writer removed it first
                pass


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
