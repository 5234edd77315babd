"""A compiled library loaded with its weights in huge pages.

A library's weights are the constants of its Relax VM, which TVM allocates and fills
when it loads the library, in pages of 4 KB. A call at batch 1 reads every weight once
(a ResNet-50's library holds 100-140 MB of them), so each call walks the address
translations of some 30 000 pages, more than the TLB holds, and the hardware's
prefetchers stop at each page's end. In 2 MB pages (Linux's transparent huge pages) a
call walks about 70.

:func:`advise_weights`, given a loaded library, calls it once on zeros, noting the
arrays its kernels are given (the weights and that call's maps), and asks Linux to back
the memory they lie in with huge pages: ``madvise(MADV_HUGEPAGE)``, then
``madvise(MADV_COLLAPSE)`` (Linux 6.1 and later) to move the pages now rather than when
the kernel's ``khugepaged`` gets to them. Only that memory is advised: other runtimes
in the same process keep the pages they were given. (Telling the load's memory apart
by the address ranges the load added to the process missed weights that ``malloc`` put
in space freed before, as in a process that had just compiled the network.) It is a
hint: where the kernel or its settings refuse (transparent huge pages set to ``never``,
no 2 MB page free, another OS) the library runs as before. ``tools/cpp/run_library``
advises a library it loads the same way, from C++.

Measured (Intel Xeon, 1 thread, libraries loaded both ways and timed side by side by
TVM alone; results/NOTES.md, stop 51): Oct-ResNet-50 alpha .75 0.89-0.96 x the time,
alpha 0 0.91-0.95 x, GluonCV's ResNet-50 0.94-0.96 x, the most when the machine was
slow; on 2 threads 0.85 and 0.92 x; the MobileNets (about 10 MB of weights, which stay
in L3) unchanged. In the table's loop, among the other backends' calls, in a fast
phase of the machine, the gain was within the noise. Loading a ResNet-50 library takes
about 0.4 s longer.
"""
import ctypes
import ctypes.util

import numpy as np
import tvm
from tvm import relax

__all__ = ["advise_weights", "merge_spans"]

MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25
PAGE = 4096
# spans of memory closer than this are advised as one (malloc's headers and alignment
# between arrays allocated one after the other)
GAP = 64 << 10


def advise_weights(module, input_shape):
    """Advise into huge pages the memory of the arrays a call of ``module``'s Relax
    ``main`` (on an input of ``input_shape``) gives its kernels: the weights, shared by
    every VM of the module, among them. The call is made by a VM of its own."""
    vm = relax.VirtualMachine(module, tvm.cpu())
    for start, end in merge_spans(_array_spans(vm, input_shape)):
        _advise(start, end - start)


def _array_spans(vm, input_shape):
    """The memory ``(start, end)`` of each array the kernels of ``vm``'s ``main`` are
    given in a call on zeros of ``input_shape``."""
    spans = []

    def instrument(func, name, before, result, *args):
        for a in args if before else ():
            if isinstance(a, tvm.runtime.Tensor):
                size = a.numel() * np.dtype(str(a.dtype)).itemsize
                spans.append((a.data_ptr(), a.data_ptr() + size))
        return 0  # carry on as usual

    vm.set_instrument(instrument)
    vm["main"](tvm.runtime.tensor(np.zeros(input_shape, np.float32)))
    return spans


def merge_spans(spans, gap=GAP):
    """``spans`` widened to whole pages, those less than ``gap`` bytes apart joined,
    sorted."""
    merged = []
    for start, end in sorted((s - s % PAGE, -(-e // PAGE) * PAGE) for s, e in spans if e > s):
        if merged and start - merged[-1][1] < gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [tuple(span) for span in merged]


def _advise(start, length):
    """Ask for huge pages over ``length`` bytes from ``start`` (page-aligned); errors
    (an old kernel, huge pages switched off or all taken) leave the pages as they are."""
    if _libc is not None:
        _libc.madvise(start, length, MADV_HUGEPAGE)
        _libc.madvise(start, length, MADV_COLLAPSE)


def _load_libc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.restype = ctypes.c_int
    return libc


_libc = _load_libc()
