// The CPUID bit of each x86 extension that LLVM 22 lists for any of its CPUs among the
// extensions the project's libraries record (SSE, AVX, AVX-512, AVX10, AMX, FMA, F16C,
// BMI), and the register state it needs saved. The bits are those of the Intel 64 and
// IA-32 Architectures Software Developer's Manual, vol. 2A (CPUID), and of the AMD64
// Architecture Programmer's Manual, vol. 3 (CPUID Fn8000_0001); the names and the
// state each needs follow LLVM's own host detection (llvm/lib/TargetParser/Host.cpp,
// getHostCPUFeatures), so that a name means here what it means to the compiler.
#include "cpu_extensions.h"

#include <cpuid.h>

#include <cstdint>

namespace {

enum Register { kEax, kEbx, kEcx, kEdx };

// XCR0 bits the OS must set (it saves those registers) for an extension's code to run:
// SSE and AVX state; AVX-512's opmask and upper ZMM halves beside them; AMX's tile
// configuration and data
constexpr uint64_t kNoState = 0, kAvx = 0x6, kAvx512 = 0xe6, kAmx = 0x60000;

struct Extension {
  const char* name;  // LLVM's
  uint32_t leaf, subleaf;
  Register reg;
  int bit;
  uint64_t state;
};

constexpr Extension kExtensions[] = {
    {"sse", 1, 0, kEdx, 25, kNoState},
    {"sse2", 1, 0, kEdx, 26, kNoState},
    {"sse3", 1, 0, kEcx, 0, kNoState},
    {"sse4.1", 1, 0, kEcx, 19, kNoState},
    {"sse4.2", 1, 0, kEcx, 20, kNoState},
    {"sse4a", 0x80000001, 0, kEcx, 6, kNoState},
    {"avx", 1, 0, kEcx, 28, kAvx},
    {"fma", 1, 0, kEcx, 12, kAvx},
    {"f16c", 1, 0, kEcx, 29, kAvx},
    {"fma4", 0x80000001, 0, kEcx, 16, kAvx},
    {"bmi", 7, 0, kEbx, 3, kNoState},
    {"avx2", 7, 0, kEbx, 5, kAvx},
    {"bmi2", 7, 0, kEbx, 8, kNoState},
    {"avx512f", 7, 0, kEbx, 16, kAvx512},
    {"avx512dq", 7, 0, kEbx, 17, kAvx512},
    {"avx512ifma", 7, 0, kEbx, 21, kAvx512},
    {"avx512cd", 7, 0, kEbx, 28, kAvx512},
    {"avx512bw", 7, 0, kEbx, 30, kAvx512},
    {"avx512vl", 7, 0, kEbx, 31, kAvx512},
    {"avx512vbmi", 7, 0, kEcx, 1, kAvx512},
    {"avx512vbmi2", 7, 0, kEcx, 6, kAvx512},
    {"avx512vnni", 7, 0, kEcx, 11, kAvx512},
    {"avx512bitalg", 7, 0, kEcx, 12, kAvx512},
    {"avx512vpopcntdq", 7, 0, kEcx, 14, kAvx512},
    {"avx512vp2intersect", 7, 0, kEdx, 8, kAvx512},
    {"amx-bf16", 7, 0, kEdx, 22, kAmx},
    {"avx512fp16", 7, 0, kEdx, 23, kAvx512},
    {"amx-tile", 7, 0, kEdx, 24, kAmx},
    {"amx-int8", 7, 0, kEdx, 25, kAmx},
    {"avxvnni", 7, 1, kEax, 4, kAvx},
    {"avx512bf16", 7, 1, kEax, 5, kAvx512},
    {"amx-fp16", 7, 1, kEax, 21, kAmx},
    {"avxifma", 7, 1, kEax, 23, kAvx},
    {"avxvnniint8", 7, 1, kEdx, 4, kAvx},
    {"avxneconvert", 7, 1, kEdx, 5, kAvx},
    {"amx-complex", 7, 1, kEdx, 8, kAmx},
    {"avxvnniint16", 7, 1, kEdx, 10, kAvx},
    {"amx-fp8", 0x1e, 1, kEax, 4, kAmx},
    {"amx-tf32", 0x1e, 1, kEax, 6, kAmx},
    {"amx-avx512", 0x1e, 1, kEax, 7, kAmx | kAvx512},
    {"amx-movrs", 0x1e, 1, kEax, 8, kAmx},
};

// AVX10 comes in versions: CPUID 7.1 EDX bit 19 says the CPU has it, leaf 0x24 EBX bits
// 0-7 give the version, which includes every earlier one; it uses the AVX-512 registers
struct Avx10 {
  const char* name;
  uint32_t version;
};
constexpr Avx10 kAvx10[] = {{"avx10.1", 1}, {"avx10.2", 2}};

// CPUID ``leaf`` (sub-leaf ``subleaf``) into ``out``; false where the CPU has no such
// leaf or sub-leaf (sub-leaf 0 of leaves 7 and 0x1e gives their highest sub-leaf)
bool cpuid(uint32_t leaf, uint32_t subleaf, uint32_t (&out)[4]) {
  if (leaf > __get_cpuid_max(leaf & 0x80000000u, nullptr)) return false;
  __cpuid_count(leaf, 0, out[kEax], out[kEbx], out[kEcx], out[kEdx]);
  if (subleaf > 0 && out[kEax] < subleaf) return false;
  __cpuid_count(leaf, subleaf, out[kEax], out[kEbx], out[kEcx], out[kEdx]);
  return true;
}

bool has_bit(uint32_t leaf, uint32_t subleaf, Register reg, int bit) {
  uint32_t out[4];
  return cpuid(leaf, subleaf, out) && ((out[reg] >> bit) & 1);
}

// XCR0, the register state the OS saves; 0 where the OS has not enabled XSAVE (OSXSAVE,
// CPUID 1 ECX bit 27), when XGETBV cannot run
uint64_t saved_state() {
  if (!has_bit(1, 0, kEcx, 27)) return 0;
  uint32_t low = 0, high = 0;
  __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
  return (static_cast<uint64_t>(high) << 32) | low;
}

bool state_saved(uint64_t state) { return (saved_state() & state) == state; }

}  // namespace

std::optional<bool> cpu_has(const std::string& name) {
  for (const Extension& e : kExtensions) {
    if (name == e.name) return has_bit(e.leaf, e.subleaf, e.reg, e.bit) && state_saved(e.state);
  }
  for (const Avx10& e : kAvx10) {
    if (name != e.name) continue;
    uint32_t out[4];
    return has_bit(7, 1, kEdx, 19) && cpuid(0x24, 0, out) && (out[kEbx] & 0xff) >= e.version &&
           state_saved(kAvx512);
  }
  return std::nullopt;
}

std::vector<std::string> known_extensions() {
  std::vector<std::string> names;
  for (const Extension& e : kExtensions) names.push_back(e.name);
  for (const Avx10& e : kAvx10) names.push_back(e.name);
  return names;
}
