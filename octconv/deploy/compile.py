"""Compile a lowered network with TVM (Relax VM), export it, load it back.

Each distinct kernel becomes one scheduled PrimFunc (a ResNet's repeated blocks share
them), called from a Relax ``main`` whose weights are constants, so the exported
library is self-contained: it loads and runs with TVM's runtime alone. Every kernel's
outer loop is parallel; the thread count is chosen when the network runs. A library
is built into a :class:`~octconv.deploy.libraries.LibraryCache`, its kernels in build
processes (:mod:`octconv.deploy.builders`), and loaded from there.
"""
import os
import shutil
import struct
import tempfile
import threading
import time
import warnings
from collections import Counter

import numpy as np
import tvm
from tvm import relax, s_tir
from tvm.relax.vm_build import _filter_tir, _vmcodegen, _vmlink

from octconv.deploy import builders
from octconv.deploy.algorithms import AlgorithmChoice
from octconv.deploy.hugepages import ADVISE, advice_object, advise_now, source_digest
from octconv.deploy.kernels import vectorize_inner
from octconv.deploy.libraries import LibraryCache, program_digest
from octconv.deploy.lower import PER_IMAGE_BYTES, Tensor, lower
from octconv.deploy.target import (describe, extensions, host_cpu, known_cpu, l2_cache_bytes,
                                   lacking, make_target, runs_here, vector_lanes)
from octconv.deploy.threads import reserve_threads, resolve_threads, use_threads
from octconv.deploy.tuning import (SCHEDULE_VERSION, TileCache, choose_tile, kernel_arguments,
                                   scheduled_func, search_tiles, time_cold, time_function)
from octconv.deploy.winograd import band_bytes
from octconv.files import write_atomically
from octconv.weights import check_input_shape, check_params

__all__ = ["CompiledNetwork", "compile_symbol", "load_library"]

# the version of how a network's library is assembled from its kernels here (part of a
# cached library's key beside the kernels' schedule version): 2, the per-image slices
# and the stacking scheduled; 3, the kernels built in build processes and linked; 4,
# functions giving the input shape and the CPU compiled for; 5, a function listing the
# instruction set extensions compiled for (a runtime without LLVM checks them); 6, the
# library advises its weights into huge pages itself (:mod:`octconv.deploy.hugepages`)
ASSEMBLY = 6
# the library's functions giving the input shape, the LLVM CPU it was compiled for and
# that CPU's instruction set extensions (LLVM's names, comma-separated)
INPUT_SHAPE, CPU, EXTENSIONS = "input_shape", "cpu", "extensions"
# the bytes a tensor passed to the network must be aligned to (TVM's kernels assume it;
# tvm.runtime.from_dlpack refuses others)
ALIGNMENT = 64


class _Runner:
    """Calls a Relax VM's ``main`` with a fixed thread count, on inputs of
    ``input_shape`` (a ValueError otherwise; None: the shape the library gives, or, in
    a library made before libraries gave one, not checked here, the VM's own check
    raising a TVM error). A library compiled for a CPU with instructions this one lacks
    is refused (a ValueError naming them; run, it would die of an illegal instruction):
    the extensions the library lists are checked, or, in a library made before
    libraries listed them, those LLVM gives its CPU, and then one compiled for a CPU
    this LLVM does not know is refused too (nothing can be checked).
    Each calling thread runs a VM of its own (:attr:`vm`; they share the library's
    weights), so that the calls of a server's request threads run at once, each on
    ``threads`` workers of its thread's pool (one VM called from two threads at once
    crashed the process). A thread's input is copied (and converted to float32) by NumPy
    into one 64-byte aligned array kept from call to call, which a TVM tensor shares
    (:func:`_shared_input`): a new array each call cost its fresh pages (0.3 ms of a
    25 ms batch-8 call of MobileNet v2 1.0 here), and right after a call
    ``Tensor.copyfrom`` took 0.19 ms where this copy takes 0.07 (224 px). The result
    reaches NumPy through DLPack and is copied once into an array of the caller's own:
    16 us, where ``Tensor.numpy()`` took 80-170 right after a call. Called back to back
    on one thread (AMD EPYC Zen 4), Oct-MobileNet v1 0.75 and MobileNet v1 0.75 spent
    0.14 and 0.27 ms beyond the VM's own call with those two, 0.08 and 0.14 with these."""

    def __init__(self, module, input_shape, threads):
        self.module = module
        self._own = threading.local()  # .vm, .data, .tensor: the thread's VM and input
        cpu, listed = self._recorded(CPU), self._recorded(EXTENSIONS)
        if listed is not None:
            needed = str(listed).split(",")
        elif cpu and known_cpu(cpu):  # a library made before libraries listed them
            needed = extensions(make_target(cpu))
        elif cpu:
            raise ValueError(f"compiled for the CPU {cpu}, which this TVM's LLVM does not "
                             "know (a newer LLVM's name?), so its instructions cannot be "
                             "checked against this CPU's; compile it again with this TVM")
        else:
            needed = []
        missing = lacking(needed)
        if missing:
            raise ValueError(f"compiled for the CPU {cpu}, whose {', '.join(missing)} this "
                             f"CPU ({host_cpu()}) lacks; compile for this CPU (the default) "
                             "or name the oldest CPU it must run on (--target)")
        if input_shape is None:
            input_shape = self._recorded(INPUT_SHAPE)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.threads = threads

    @property
    def vm(self):
        """The calling thread's VM of the library, made at its first use."""
        own = self._own
        if not hasattr(own, "vm"):
            own.vm, own.data, own.tensor = relax.VirtualMachine(self.module, tvm.cpu()), None, None
        return own.vm

    def _recorded(self, name):
        """What the library's function ``name`` gives; None if it has none."""
        try:
            return self.vm[name]()
        except AttributeError:  # no such function
            return None

    def __call__(self, x):
        if self.input_shape is not None and tuple(np.shape(x)) != self.input_shape:
            raise ValueError(f"compiled for inputs of shape {self.input_shape}, got "
                             f"{tuple(np.shape(x))}; compile again for another size or batch")
        use_threads(self.threads)
        vm, own = self.vm, self._own
        if own.data is None or own.data.shape != np.shape(x):
            own.data, own.tensor = _shared_input(np.shape(x))
        np.copyto(own.data, x, casting="unsafe")
        return np.from_dlpack(vm["main"](own.tensor)).copy()


def _shared_input(shape):
    """A float32 NumPy array of ``shape`` whose data start on a 64-byte boundary, as
    TVM's kernels require of their arguments, and a TVM tensor sharing its memory
    (DLPack): what NumPy writes into the array, the network reads."""
    count = int(np.prod(shape))
    whole = np.empty(count + ALIGNMENT // 4, np.float32)
    start = (-whole.ctypes.data % ALIGNMENT) // 4
    array = whole[start:start + count].reshape(shape)
    return array, tvm.runtime.from_dlpack(array)


class CompiledNetwork:
    """A compiled network: ``run(x)`` on an NCHW float32 array of ``input_shape`` gives
    the logits, on ``threads`` threads. ``stats`` holds the compile's kernel and call
    counts (``per_image``: the first calls, run image by image), searches, wall times
    and whether the library came from the cache; ``program`` the lowered kernel calls."""

    def __init__(self, module, target, input_shape, threads, stats, program, library):
        self.module = module
        self.target = target
        self.input_shape = tuple(input_shape)
        self.threads = threads
        self.stats = stats
        self.program = program
        self.library = library  # the file in the library cache
        self._run = None

    def run(self, x):
        if self._run is None:
            self._run = _Runner(self.module, self.input_shape, self.threads)
        return self._run(x)

    def with_threads(self, threads):
        """The same library, run on ``threads`` threads (0: all cores)."""
        return CompiledNetwork(self.module, self.target, self.input_shape,
                               resolve_threads(threads), self.stats, self.program, self.library)

    def profile(self, x, runs=10, alone=False):
        """Where a call's time goes, kernel by kernel: one row per compiled kernel,
        slowest first, with its ``function`` name, ``calls`` per network call, ``ms``
        (the median over ``runs`` network calls of the time its calls take together,
        timed around each call by the VM), ``macs`` (multiply-adds as the direct
        computation counts them, :attr:`Kernel.macs`) and ``weight_bytes`` (the bytes of
        the constants its calls read: weights, biases, folded BatchNorms; inside a
        network they come from memory, read once per call at batch 1). With ``alone``,
        also ``alone_ms``: the same calls' time with the kernel run alone, again and
        again on the same random arrays, as the tile search times it (median of
        ``runs`` timings; its data stay in cache); and ``cold_ms``: the same with every
        argument but the input flushed from the caches before each call (median of
        ``runs`` calls), as a kernel finds its weights inside a network (its output
        and any other input, an add's, flushed too, which a network's kernel often
        finds in cache). Where ``ms`` exceeds ``alone_ms``, the kernel reads from L3 or
        memory inside the network what stays in its core's cache alone; where ``ms`` is
        near ``cold_ms``, it waits for its weights from memory. On more than one thread
        ``alone`` also gives ``alone_1_thread_ms``, the same as ``alone_ms`` timed on one
        thread right after: over ``alone_ms``, the kernel's own scaling, apart from what
        the kernels before it left in the other core's cache."""
        runner = _Runner(self.module, self.input_shape, self.threads)
        runner(x)  # warm-up, and the input's shape checked
        names, kernels, calls = function_names(self.program), {}, Counter()
        weight_bytes = Counter()
        for j, call in enumerate(self.program.calls):
            name = names[call.kernel.key()]
            kernels[name] = call.kernel
            count = self.input_shape[0] if j < self.program.per_image else 1  # (once an image)
            calls[name] += count
            weight_bytes[name] += count * sum(a.nbytes for a in call.args
                                              if isinstance(a, np.ndarray))
        started, spent = {}, {name: [] for name in kernels}

        def instrument(func, name, before, result, *args):
            now = time.perf_counter()
            if name not in spent:  # the VM's own builtins
                return 0
            if before:
                started[name] = now
            else:
                spent[name][-1] += now - started.pop(name)
            return 0  # carry on as usual

        runner.vm.set_instrument(instrument)
        for _ in range(runs):
            for times in spent.values():
                times.append(0.0)
            runner(x)
        rows = [dict(function=name, calls=calls[name], ms=1e3 * float(np.median(spent[name])),
                     macs=calls[name] * kernels[name].macs, weight_bytes=weight_bytes[name])
                for name in kernels]
        library = getattr(self.module, "mod", self.module)  # a relax Executable's module
        for row in rows if alone else []:
            name, args = row["function"], kernel_arguments(kernels[row["function"]])
            row["alone_ms"] = row["calls"] * time_function(library, name, args, runs)
            row["cold_ms"] = row["calls"] * time_cold(library, name, args, runs)
            if self.threads > 1:
                use_threads(1)
                row["alone_1_thread_ms"] = row["calls"] * time_function(library, name, args,
                                                                        runs)
                use_threads(self.threads)
        return sorted(rows, key=lambda row: -row["ms"])

    def export(self, path):
        """Write a shared library that :func:`load_library` (TVM's runtime only) runs,
        atomically, making its folder if need be."""
        write_atomically(path, lambda tmp: shutil.copyfile(self.library, tmp), suffix=".so")
        return path


def load_library(path, threads=1):
    """A callable ``x -> logits`` from a library written by :meth:`CompiledNetwork.export`,
    running on ``threads`` threads (0: all cores). Inputs must have the compiled shape,
    which the callable's ``input_shape`` holds (a ValueError otherwise). A missing file,
    one that is not such a library, and a library compiled for a CPU with instructions
    this one lacks, or for one this TVM's LLVM does not know, are ValueErrors naming it."""
    threads = resolve_threads(threads)
    if not os.path.isfile(path):
        raise ValueError(f"no compiled library at {path}")
    if _cut_short(path):
        raise ValueError(f"{path} is cut short (its headers point past its end); copy or "
                         "export it again")
    try:
        runner = _Runner(tvm.runtime.load_module(path), None, threads)
    except (RuntimeError, AttributeError) as error:  # not loadable; no Relax VM in it
        reason = str(error).strip().splitlines()[-1]
        raise ValueError(f"{path} is not a library written by CompiledNetwork.export: "
                         f"{reason}") from None
    except ValueError as error:  # made for another CPU
        raise ValueError(f"{path}: {error}") from None
    if runner.input_shape is not None:  # (a library made before libraries gave it: not)
        advise_now(runner.module, runner.input_shape)
    return runner


def _cut_short(path):
    """Whether ``path``, a 64-bit little-endian ELF file, ends before the section headers
    or a segment its headers place (loading such a library maps pages past the end of
    the file, and the first read of one kills the process with SIGBUS). Other files
    are left to the loader, which refuses them with an error."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = f.read(64)
        if len(header) < 64 or header[:6] != b"\x7fELF\x02\x01":
            return False
        ph_offset, sh_offset = struct.unpack_from("<QQ", header, 32)
        ph_size, ph_count, sh_size, sh_count = struct.unpack_from("<HHHH", header, 54)
        if sh_offset + sh_size * sh_count > size or ph_offset + ph_size * ph_count > size:
            return True
        f.seek(ph_offset)
        table = f.read(ph_size * ph_count)
    segments = (struct.unpack_from("<8xQ16xQ", table, j * ph_size) for j in range(ph_count))
    return any(offset + length > size for offset, length in segments)


def function_names(program):
    """The PrimFunc name of each distinct kernel of ``program`` (kernel key -> name):
    its kind and first-use index, e.g. ``conv3``, ``winograd7``."""
    names = {}
    for call in program.calls:
        key = call.kernel.key()
        if key not in names:
            names[key] = f"{type(call.kernel).__name__.lower()}{len(names)}"
    return names


def _relax_module(program, tiles, target):
    """The Relax module calling ``program``'s kernels scheduled with ``tiles``: its
    first ``per_image`` calls once per image, on the image's slice of the input; the
    later calls on the whole batch, with the per-image results they read concatenated;
    ``main`` first passes every weight to :data:`~octconv.deploy.hugepages.ADVISE` (C
    code linked into the library), which advises them into huge pages on the first
    call; beside ``main``, functions giving the input shape, the LLVM CPU name of
    ``target`` and the instruction set extensions its code may use."""
    bb = relax.BlockBuilder()
    data = relax.Var("data", relax.TensorType(program.input_shape, "float32"))
    names = function_names(program)
    weights = {id(a): a for call in program.calls for a in call.args
               if not isinstance(a, (str, Tensor))}  # (one constant for all images)
    constants = {key: relax.const(a) for key, a in weights.items()}
    funcs = {}

    def emit(call, values, image):
        """Emit ``call`` on ``image`` (its input), appending its result to ``values``."""
        key = call.kernel.key()
        if key not in funcs:
            name = names[key]
            funcs[key] = bb.add_func(
                scheduled_func(call.kernel, tiles[key]).with_attr("global_symbol", name), name)
        args = []
        for a in call.args:
            if isinstance(a, str):
                args.append(image)
            elif isinstance(a, Tensor):
                args.append(values[a.index])
            else:
                args.append(constants[id(a)])
        values.append(bb.emit(relax.call_tir(
            funcs[key], args, relax.TensorType(call.out_shape, "float32"))))

    count = program.per_image
    read_later = {a.index for call in program.calls[count:] for a in call.args
                  if isinstance(a, Tensor)} | {len(program.calls) - 1}  # (the logits)
    with bb.function("main", [data]):
        if weights:  # an impure call, before the dataflow block (which drops unused values)
            bb.emit(relax.Call(relax.ExternFunc(ADVISE), list(constants.values()),
                               ty_args=[relax.ObjectType()]))
        with bb.dataflow():
            images = []
            for i in range(program.input_shape[0] if count else 0):
                image = bb.emit(relax.op.strided_slice(data, [0], [i], [i + 1]))
                images.append([])
                for call in program.calls[:count]:
                    emit(call, images[-1], image)
            values = [bb.emit(relax.op.concat([own[j] for own in images], axis=0))
                      if j in read_later else None for j in range(count)]
            for call in program.calls[count:]:
                emit(call, values, data)
            out = bb.emit_output(values[-1])
        bb.emit_func_output(out)
    with bb.function(INPUT_SHAPE, []):  # what a loaded library checks inputs against
        bb.emit_func_output(relax.ShapeExpr(program.input_shape))
    with bb.function(CPU, []):  # and the CPU that runs it
        bb.emit_func_output(tvm.ir.StringImm(str(target.attrs["mcpu"])))
    with bb.function(EXTENSIONS, []):  # checked by runtimes without LLVM (tools/cpp)
        bb.emit_func_output(tvm.ir.StringImm(",".join(extensions(target))))
    return bb.get()


def _schedule_copies(module):
    """``module`` with Relax's own operators (a batch's per-image input slices and the
    stacking of their results) lowered to PrimFuncs and scheduled as the kernels' data
    movement is, outer loops in parallel and the innermost vectorized; left to the
    default lowering they copied one element at a time on one thread (about 1 ms of a
    24 ms batch-8 call of MobileNet v2 1.0)."""
    module = relax.transform.LegalizeOps()(module)
    for gvar, func in list(module.functions.items()):
        if isinstance(func, tvm.tirx.PrimFunc) and "tir.is_scheduled" not in func.attrs:
            sch = s_tir.Schedule(func)
            for block in sch.get_child_blocks(sch.get_sblock("root")):
                vectorize_inner(sch, block)
            module[gvar] = sch.mod["main"].with_attr("tir.is_scheduled", True)
    return module


def compile_symbol(symbol, params, input_shape, target=None, cache=None, budget=4, threads=1,
                   libraries=None, winograd=True, per_image_bytes=PER_IMAGE_BYTES):
    """Compile ``symbol`` (an MXNet Symbol ending at the logits) with ``params`` (name
    -> array) for inputs of ``input_shape`` (N, C, H, W; any batch N >= 1) on ``target``
    (a TVM target or an LLVM CPU name; the host by default).

    ``cache``: a :class:`TileCache` (the default file when None); ``budget``: tiles tried
    per new workload; ``threads``: threads of :meth:`CompiledNetwork.run` (0: all
    cores); ``libraries``: the :class:`LibraryCache` where the library is built, or
    found built before (default: the ``libraries`` folder beside the tile cache);
    ``winograd``: 3x3 stride-1 convolutions by Winograd's algorithm (fewer multiplies,
    about 1e-5 relative error per layer) where it is measured faster with the weights
    out of cache
    (:mod:`octconv.deploy.algorithms`; where nothing is measured, where
    :data:`~octconv.deploy.winograd.RULE` says), or all directly;
    ``per_image_bytes``: with a batch of several images, a network with depthwise
    convolutions runs its first layers image by image up to the last one whose
    batch's maps exceed this size (:func:`~octconv.deploy.lower.lower`). Every weight is
    checked against the shape MXNet infers for ``input_shape`` (ValueError naming the
    parameter)."""
    input_shape = check_input_shape(input_shape)
    if len(input_shape) != 4:  # the kernels are 2-D
        raise ValueError(f"the TVM path compiles image networks, whose input is (batch, "
                         f"channels, height, width); got {input_shape}, a clip's (video "
                         "networks: tools/export_onnx.py exports them to ONNX)")
    check_params(symbol, params, input_shape)
    threads = resolve_threads(threads)
    reserve_threads(threads)  # before the tile search starts TVM's pool on one thread
    target = target if isinstance(target, tvm.target.Target) else make_target(target)
    cache = cache if cache is not None else TileCache()
    if libraries is None:
        libraries = LibraryCache(cache.folder_beside("libraries"))
    lanes = vector_lanes(target)
    start, searches_before = time.perf_counter(), cache.searches
    choose = AlgorithmChoice(target, cache, budget)
    bands = band_bytes(l2_cache_bytes(target))
    program = lower(symbol.tojson(), params, input_shape, lanes, winograd, choose,
                    per_image_bytes, bands)
    if choose.measure():  # lowered again with the measured algorithms
        program = lower(symbol.tojson(), params, input_shape, lanes, winograd, choose,
                        per_image_bytes, bands)
    kernels = program.kernels()
    search_tiles(kernels, target, lanes, cache, budget)
    tiles = {k.key(): choose_tile(k, target, lanes, cache, budget) for k in kernels}
    cache.save()
    tuned = time.perf_counter()
    digest = program_digest(program, tiles, describe(target),
                            (SCHEDULE_VERSION, ASSEMBLY, source_digest()))
    module = libraries.load(digest)
    built = module is None
    if built:
        assembled = _schedule_copies(_relax_module(program, tiles, target))
        libraries.store(digest, lambda path: _write_library(assembled, target, path))
        module = libraries.load(digest)
        if module is None:
            raise RuntimeError(f"the library just built, {libraries.path(digest)}, does not "
                               "load")
    if runs_here(target):  # (a library for another CPU is not called here)
        advise_now(module, input_shape)
    done = time.perf_counter()
    stats = dict(kernels=len(kernels), calls=len(program.calls), per_image=program.per_image,
                 searches=cache.searches - searches_before,
                 library="built" if built else "cached", tune_s=round(tuned - start, 2),
                 build_s=round(done - tuned, 2))
    return CompiledNetwork(module, target, input_shape, threads, stats, program,
                           libraries.path(digest))


def _write_library(module, target, path):
    """Build the Relax module ``module`` for ``target`` into the shared library ``path``:
    its kernels in the build processes, one part per core (:func:`builders.parts
    <octconv.deploy.builders.parts>`), each part into an object file linked into the
    library beside the VM's bytecode and constants made here (Oct-ResNet-50 alpha .5's
    library in 11.7 s instead of 15-16 on 2 cores), with ``hugepages.c`` (the weights'
    advice). If a build process fails, every kernel is built here, with a warning. The
    steps are those of ``tvm.compile`` for a Relax module with its default pipelines,
    split where the kernels are built (TVM 0.27's ``relax.vm_build._vmcodegen`` and
    ``_vmlink``)."""
    with target:
        module = relax.get_pipeline("default")(module)
    builder = relax.ExecBuilder()
    kernels = _filter_tir(_vmcodegen(builder, module, "bytecode"))
    parts = builders.parts(list(kernels.functions.items()))
    with tempfile.TemporaryDirectory() as folder:
        objects = [os.path.join(folder, f"kernels{j}.o") for j in range(len(parts))]
        built = builders.run([("octconv.deploy.compile", "_build_object",
                               (tvm.ir.save_json(tvm.IRModule(dict(part), attrs=kernels.attrs)),
                                str(target), obj)) for part, obj in zip(parts, objects)])
        if not built:
            warnings.warn("a library build process failed; building every kernel here",
                          RuntimeWarning)
        executable = _vmlink(builder, target, tir_mod=None if built else kernels)
        executable.export_library(path, addons=(objects if built else []) +
                                  [advice_object(folder)])


def _build_object(kernels_json, target_json, path):
    """Build the PrimFuncs of an IRModule (its ``tvm.ir.save_json``) for a target (its
    JSON) into the object file ``path`` (a task of a build process)."""
    kernels = tvm.ir.load_json(kernels_json)
    tvm.tirx.build(kernels, target=tvm.target.Target(target_json)).write_to_file(path)
