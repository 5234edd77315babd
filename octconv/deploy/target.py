"""CPU targets: the host by default (its CPU model as LLVM names it, less the extensions
the OS does not list for it), or any LLVM CPU name (cross-compiled when it cannot run
here); and this machine's CPU, vector extensions and L2 cache."""
import os
import platform
import re

import tvm
from tvm.target import codegen

__all__ = ["make_target", "host_cpu", "known_cpu", "extensions", "vector_lanes", "lacking",
           "runs_here", "describe", "cpu_model", "vector_isa", "l2_cache_bytes",
           "LINUX_FLAGS"]

_ISA = re.compile(r"^(avx|fma|sse|f16c|bmi|amx)")

# The names Linux gives in /proc/cpuinfo's flags to the extensions a library may list
# (LLVM's names), where it lists them (arch/x86/include/asm/cpufeatures.h in Linux's
# source: a flag is shown under the name its comment quotes; AVX10, AMX-FP16 and AMX's
# newer forms, AVX-IFMA, and the AVX-VNNI INT8/INT16 and NE-CONVERT forms it does not
# show)
LINUX_FLAGS = {
    "sse": "sse", "sse2": "sse2", "sse3": "pni", "sse4.1": "sse4_1", "sse4.2": "sse4_2",
    "sse4a": "sse4a", "avx": "avx", "fma": "fma", "f16c": "f16c", "fma4": "fma4",
    "bmi": "bmi1", "avx2": "avx2", "bmi2": "bmi2", "avx512f": "avx512f",
    "avx512dq": "avx512dq", "avx512ifma": "avx512ifma", "avx512cd": "avx512cd",
    "avx512bw": "avx512bw", "avx512vl": "avx512vl", "avx512vbmi": "avx512vbmi",
    "avx512vbmi2": "avx512_vbmi2", "avx512vnni": "avx512_vnni",
    "avx512bitalg": "avx512_bitalg", "avx512vpopcntdq": "avx512_vpopcntdq",
    "avx512vp2intersect": "avx512_vp2intersect", "avx512fp16": "avx512_fp16",
    "avx512bf16": "avx512_bf16", "amx-bf16": "amx_bf16", "amx-tile": "amx_tile",
    "amx-int8": "amx_int8", "avxvnni": "avx_vnni"}


def host_cpu():
    """LLVM's name of this machine's CPU (e.g. 'skylake-avx512', 'znver3')."""
    return codegen.llvm_get_system_cpu()


def known_cpu(cpu):
    """Whether this TVM's LLVM knows the CPU name ``cpu``."""
    return bool(codegen.llvm_is_valid_cpu(cpu, "x86_64-linux-gnu"))


def make_target(cpu=None):
    """A single-core LLVM target for ``cpu`` (an LLVM CPU name; the host when None or
    'host': this machine's CPU model, without the extensions its OS withholds)."""
    host = cpu in (None, "host")
    cpu = host_cpu() if host else cpu
    if not known_cpu(cpu):
        raise ValueError(f"unknown CPU {cpu!r} for LLVM; e.g. 'skylake-avx512', 'znver3', "
                         f"'haswell' or 'host'")
    spec = {"kind": "llvm", "mcpu": cpu, "num-cores": 1}
    features = codegen.llvm_get_cpu_features(tvm.target.Target(spec))
    # LLVM splits 512-bit vectors on these parts by default; our kernels size their
    # register tiles for whole zmm registers
    mattr = ["-prefer-256-bit"] if "prefer-256-bit" in features else []
    if host:  # (LLVM drops what depends on a dropped extension: AVX-512 with AVX2)
        mattr += [f"-{name}" for name in _withheld(features)]
    if mattr:
        spec["mattr"] = mattr
    return tvm.target.Target(spec)


def _withheld(features):
    """Those of this machine's CPU model's extensions ``features`` (LLVM's names) that
    Linux's /proc/cpuinfo does not list, sorted: LLVM names the host CPU by its model,
    and a hypervisor or an OS that does not save a register file withholds what the
    model has (AVX-512 on some virtual machines), where code using it dies of an
    illegal instruction. Empty where /proc/cpuinfo lists no flags."""
    listed = _linux_listed()
    if listed is None:
        return []
    return sorted(name for name in features if name in LINUX_FLAGS and name not in listed)


def _linux_listed():
    """The extensions (LLVM's names, of :data:`LINUX_FLAGS`) that Linux's /proc/cpuinfo
    lists for this machine: those its CPU reports and its OS saves the registers of.
    None where /proc/cpuinfo lists no flags."""
    flags = _cpuinfo("flags")
    if flags is None:
        return None
    flags = set(flags.split())
    return {name for name, flag in LINUX_FLAGS.items() if flag in flags}


def extensions(target):
    """The instruction set extensions that ``target``'s code may use, by LLVM's names
    ('sse4.2', 'avx2', 'avx512f', 'amx-tile', ...), sorted: what a library records for
    the runtimes that load it to check."""
    return sorted(f for f in codegen.llvm_get_cpu_features(target) if _ISA.match(f))


def vector_lanes(target):
    """float32 lanes of the widest vector the target has: 16 with AVX-512, else 8."""
    return 16 if "avx512f" in extensions(target) else 8


def lacking(names):
    """Those of the extensions ``names`` (LLVM's names) that this machine lacks, sorted:
    of the extensions Linux lists, those it does not list for this machine (a CPU newer
    than the model LLVM names it by has more); of the others, those the host target's
    CPU model lacks."""
    have = set(extensions(make_target())) | (_linux_listed() or set())
    return sorted(set(names) - have)


def runs_here(target):
    """True when this machine has every instruction set extension of ``target``."""
    return not lacking(extensions(target))


def describe(target):
    """A short stable name of ``target`` (the tuning cache's key)."""
    mattr = " ".join(target.attrs.get("mattr", []))
    return f"llvm -mcpu={target.attrs['mcpu']}" + (f" -mattr={mattr}" if mattr else "")


def _cpuinfo(key):
    """The value of the first ``key`` line of /proc/cpuinfo; None where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == key:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model():
    """This machine's CPU for results: its name as the OS gives it, then the family and
    model numbers /proc/cpuinfo gives and LLVM's name of the host CPU, e.g. 'AMD EPYC
    (family 26, model 2; LLVM znver5)'. A virtual machine may name different CPUs
    alike ('AMD EPYC' on a Zen 4 and on a Zen 5); the numbers tell them apart."""
    name = _cpuinfo("model name") or platform.processor() or "unknown"
    family, model = _cpuinfo("cpu family"), _cpuinfo("model")
    numbers = f"family {family}, model {model}; " if family and model else ""
    return f"{name} ({numbers}LLVM {host_cpu()})"


def vector_isa():
    """The vector extensions of this machine that the kernels' speed depends on, as
    the OS lists them (e.g. 'avx2, fma, avx512f, avx512_vnni'), for results."""
    flags = (_cpuinfo("flags") or "").split()
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16")
    return ", ".join(flag for flag in wanted if flag in flags) or "unknown"


def l2_cache_bytes(target, cpu_caches="/sys/devices/system/cpu/cpu0/cache"):
    """The bytes of L2 cache of a core of this machine, as Linux lists it (``size`` of
    the level-2 data or unified cache under ``cpu_caches``), where ``target``'s code
    runs here; None when cross-compiling or where Linux does not list it."""
    if not runs_here(target):
        return None
    try:
        for index in sorted(os.listdir(cpu_caches)):
            folder = os.path.join(cpu_caches, index)
            fields = {}
            for name in ("level", "type", "size"):
                with open(os.path.join(folder, name)) as f:
                    fields[name] = f.read().strip()
            if fields["level"] == "2" and fields["type"] in ("Unified", "Data"):
                size = re.fullmatch(r"(\d+)([KMG]?)", fields["size"])
                if size is None:
                    return None
                return int(size.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[size.group(2)]
    except OSError:
        pass
    return None
