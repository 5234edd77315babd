"""Files written so that a reader never sees half of one."""
import os
import tempfile

__all__ = ["write_atomically"]


def write_atomically(path, write):
    """Call ``write(temporary path)`` in ``path``'s folder, then rename the result onto
    ``path``; on failure the temporary file is removed and ``path`` is untouched."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
