"""A compiled library that keeps its weights in huge pages, however it is loaded.

A library's weights are the constants of its Relax VM, which TVM allocates and fills
when it loads the library, in pages of 4 KB. A call at batch 1 reads every weight once
(a ResNet-50's library holds 100-140 MB of them), so each call walks the address
translations of some 30 000 pages, more than the TLB holds, and the hardware's
prefetchers stop at each page's end. In 2 MB pages (Linux's transparent huge pages) a
call walks about 70.

So the library asks for them itself. Its ``main`` starts by calling :data:`ADVISE` with
every weight array, a packed function written in C (``hugepages.c``, :data:`SOURCE`,
compiled by :func:`advice_object` and linked into the library), which on the library's
first call, and only then, joins the arrays' spans and asks Linux for huge pages there:
``madvise(MADV_HUGEPAGE)``, then ``madvise(MADV_COLLAPSE)`` (Linux 6.1 and later) to
move the pages now rather than when the kernel's ``khugepaged`` gets to them. (A
PrimFunc taking every weight as a buffer took LLVM minutes to compile for DenseNet-121's
1046 weights, its time growing with the square of their count.) Every loader so gets
them: TVM's own runtime from Python or C++,
:func:`~octconv.deploy.compile.load_library`, ``tools/cpp/run_library``; the loaders of
this project make that first call at load (:func:`advise_now`) instead of leaving it to
the first request. Only the weights are advised: other runtimes in the same process keep
the pages they were given. (Telling a load's memory apart by the address ranges the load
added to the process missed weights that ``malloc`` put in space freed before.) It is a
hint: where the kernel or its settings refuse (transparent huge pages set to ``never``,
no 2 MB page free, another OS) the library runs as before. Later calls pay for the VM's
call with every weight and one flag's check: 0.6-0.7 us for the 460 weights of a
ResNet-50 here.

Measured (Intel Xeon, 1 thread, libraries loaded with and without the advice and
timed side by side by TVM alone; results/NOTES.md, stop 51): Oct-ResNet-50 alpha .75
0.89-0.96 x the time, alpha 0 0.91-0.95 x, GluonCV's ResNet-50 0.94-0.96 x, the most
when the machine was slow; on 2 threads 0.85 and 0.92 x; the MobileNets (about 10 MB
of weights, which stay in L3) unchanged. In the table's loop, among the other
backends' calls, in a fast phase of the machine, the gain was within the noise. The
first call of a ResNet-50 library takes about 0.4 s longer.
"""
import hashlib
import os
import subprocess

import numpy as np
import tvm
import tvm_ffi.libinfo
from tvm import relax
from tvm.support.cc import get_cc

__all__ = ["ADVISE", "SOURCE", "advice_object", "advise_now"]

ADVISE = "advise_weights"  # the library's packed function that advises its weights
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hugepages.c")


def source_digest():
    """A digest of :data:`SOURCE` (part of a cached library's key)."""
    with open(SOURCE, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def advice_object(folder, visible=False):
    """:data:`SOURCE` compiled into an object file in ``folder`` with TVM's C compiler
    (the one that links the library) against the TVM FFI's C header, its path; with
    ``visible``, a shared library whose ``octconv_merge_spans`` other code may call
    (the tests)."""
    compiler = get_cc()
    if compiler is None:
        raise RuntimeError("no C compiler found to build a library (set CC or install gcc)")
    path = os.path.join(folder, "hugepages.so" if visible else "hugepages.o")
    mode = ["-shared", "-DOCTCONV_VISIBLE"] if visible else ["-c"]
    headers = [f"-I{include}" for include in dict.fromkeys(
        [tvm_ffi.libinfo.find_include_path(), tvm_ffi.libinfo.find_dlpack_include_path()])]
    done = subprocess.run([compiler, "-x", "c", "-O2", "-fPIC", *headers, *mode, SOURCE,
                           "-o", path], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{compiler} could not compile {SOURCE}:\n{done.stderr}")
    return path


def advise_now(module, input_shape):
    """Make the first call of ``module``'s Relax ``main`` (on zeros of ``input_shape``,
    by a VM of its own), in which a library compiled here advises its weights; a
    loader calls it at load, so that no request pays for it."""
    vm = relax.VirtualMachine(module, tvm.cpu())
    vm["main"](tvm.runtime.tensor(np.zeros(input_shape, np.float32)))
