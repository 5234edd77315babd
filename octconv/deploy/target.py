"""CPU targets: the host by default, or any LLVM CPU name (cross-compiled when it
cannot run here); and this machine's CPU and vector extensions as results name them."""
import platform
import re

import tvm
from tvm.target import codegen

__all__ = ["make_target", "host_cpu", "known_cpu", "extensions", "vector_lanes", "lacking",
           "missing_here", "runs_here", "describe", "cpu_model", "vector_isa"]

_ISA = re.compile(r"^(avx|fma|sse|f16c|bmi|amx)")


def host_cpu():
    """LLVM's name of this machine's CPU (e.g. 'skylake-avx512', 'znver3')."""
    return codegen.llvm_get_system_cpu()


def known_cpu(cpu):
    """Whether this TVM's LLVM knows the CPU name ``cpu``."""
    return bool(codegen.llvm_is_valid_cpu(cpu, "x86_64-linux-gnu"))


def make_target(cpu=None):
    """A single-core LLVM target for ``cpu`` (an LLVM CPU name; the host when None or
    'host')."""
    cpu = host_cpu() if cpu in (None, "host") else cpu
    if not known_cpu(cpu):
        raise ValueError(f"unknown CPU {cpu!r} for LLVM; e.g. 'skylake-avx512', 'znver3', "
                         f"'haswell' or 'host'")
    spec = {"kind": "llvm", "mcpu": cpu, "num-cores": 1}
    if "prefer-256-bit" in codegen.llvm_get_cpu_features(tvm.target.Target(spec)):
        # LLVM splits 512-bit vectors on these parts by default; our kernels size their
        # register tiles for whole zmm registers
        spec["mattr"] = ["-prefer-256-bit"]
    return tvm.target.Target(spec)


def extensions(target):
    """The instruction set extensions that ``target``'s code may use, by LLVM's names
    ('sse4.2', 'avx2', 'avx512f', 'amx-tile', ...), sorted: what a library records for
    the runtimes that load it to check."""
    return sorted(f for f in codegen.llvm_get_cpu_features(target) if _ISA.match(f))


def vector_lanes(target):
    """float32 lanes of the widest vector the target has: 16 with AVX-512, else 8."""
    return 16 if "avx512f" in extensions(target) else 8


def lacking(names):
    """Those of the extensions ``names`` (LLVM's names) that this machine lacks, sorted."""
    return sorted(set(names) - set(extensions(make_target())))


def missing_here(target):
    """The instruction set extensions of ``target`` that this machine lacks, sorted."""
    return lacking(extensions(target))


def runs_here(target):
    """True when this machine has every instruction set extension of ``target``."""
    return not missing_here(target)


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
    """This machine's CPU as the OS names it (e.g. 'AMD EPYC'), for results."""
    return _cpuinfo("model name") or platform.processor() or "unknown"


def vector_isa():
    """The vector extensions of this machine that the kernels' speed depends on, as
    the OS lists them (e.g. 'avx2, fma, avx512f, avx512_vnni'), for results."""
    flags = (_cpuinfo("flags") or "").split()
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16")
    return ", ".join(flag for flag in wanted if flag in flags) or "unknown"
