// cpu_extensions: whether this CPU can run code that uses an x86 instruction set
// extension, by the extension's LLVM name, as a library of tools/tvm_compile.py lists
// the extensions of the CPU it was compiled for (octconv.deploy.target.extensions).
// Read from CPUID, and from XGETBV for the register state the OS saves on a context
// switch: an extension whose registers the OS does not save counts as missing.
#ifndef OCTCONV_CPU_EXTENSIONS_H_
#define OCTCONV_CPU_EXTENSIONS_H_

#include <optional>
#include <string>
#include <vector>

// Whether this CPU (and its OS) runs code using the extension ``name``; nullopt for a
// name this table does not know (a newer LLVM's).
std::optional<bool> cpu_has(const std::string& name);

// Every extension name the table knows, in its order.
std::vector<std::string> known_extensions();

#endif  // OCTCONV_CPU_EXTENSIONS_H_
