"""Compiled libraries kept on disk, so that compiling the same network again builds
nothing (and, through :class:`CheckedFiles`, other files named by a digest).

A library is named by a digest of everything that decides its code and constants:
the kernel calls of the lowered program (each kernel's workload and tile, the packed
weights' bytes, the wiring), the input shape, the target and the TVM and schedule
versions. Each library is written atomically beside a checksum of its bytes; a file
that does not match its checksum (truncated, overwritten: loading it could crash the
process) or cannot be loaded is ignored with a warning and rebuilt.
"""
import hashlib
import os
import warnings

import numpy as np
import tvm

from octconv.files import write_atomically

__all__ = ["CheckedFiles", "LibraryCache", "program_digest"]


def program_digest(program, tiles, target_name, version):
    """A hex digest of ``program`` compiled with ``tiles`` (kernel key -> tile) for the
    target named ``target_name`` by the code of ``version`` (any value with a stable
    ``repr``: the schedule version and that of the library's assembly)."""
    digest = hashlib.sha256()
    digest.update(repr((version, tvm.__version__, target_name, program.input_shape,
                         program.per_image)).encode())
    for call in program.calls:
        key = call.kernel.key()
        digest.update(repr((key, tiles[key])).encode())
        for arg in call.args:
            if isinstance(arg, np.ndarray):
                digest.update(repr((arg.dtype.str, arg.shape)).encode())
                digest.update(np.ascontiguousarray(arg).tobytes())
            else:
                digest.update(repr(arg).encode())
    return digest.hexdigest()


class CheckedFiles:
    """Files (``what`` they are, for messages) in ``folder`` named by a digest and
    ``suffix``, each written atomically beside a checksum of its bytes; a file whose
    bytes do not match (truncated, overwritten) counts as absent, with a warning."""

    def __init__(self, folder, suffix, what):
        self.folder = folder
        self.suffix = suffix
        self.what = what

    def path(self, digest):
        return os.path.join(self.folder, f"{digest}{self.suffix}")

    def valid(self, digest):
        """Whether the file of ``digest`` exists and matches its checksum."""
        path = self.path(digest)
        if not os.path.exists(path):
            return False
        try:
            with open(path + ".sha256") as f:
                expected = f.read().strip()
        except OSError:
            expected = None
        if _file_hash(path) != expected:
            self.ignore(digest, "its bytes do not match their checksum")
            return False
        return True

    def ignore(self, digest, why):
        warnings.warn(f"ignoring the unreadable {self.what} {self.path(digest)} ({why}); it "
                      "will be replaced", RuntimeWarning)

    def store(self, digest, write):
        """Write the file of ``digest`` by ``write(temporary path)``."""
        checksum = []

        def written(tmp):
            write(tmp)
            checksum.append(_file_hash(tmp))
        write_atomically(self.path(digest), written, suffix=self.suffix)
        write_atomically(self.path(digest) + ".sha256", lambda tmp: _write_text(tmp, checksum[0]))


class LibraryCache(CheckedFiles):
    """Shared libraries in ``folder``, one per digest."""

    def __init__(self, folder):
        super().__init__(folder, ".so", "compiled library")

    def load(self, digest):
        """The loaded module of ``digest``, or None when absent or unreadable."""
        if not self.valid(digest):
            return None
        try:
            return tvm.runtime.load_module(self.path(digest))
        except Exception as err:  # noqa: BLE001 - TVM raises plain errors for bad files
            self.ignore(digest, str(err).splitlines()[0])
            return None


def _write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def _file_hash(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()

