// run_library: run a network library of tools/tvm_compile.py --out from C++, with TVM's
// runtime alone (libtvm_runtime and libtvm_ffi; no Python, no MXNet, no compiler).
//
//   run_library LIBRARY INPUT OUTPUT [--threads N] [--runs N]
//   run_library --extensions
//
// INPUT holds the network's input as raw float32 values in C order, of the shape the
// library was compiled for (batch x 3 x height x width; the library records it): RGB
// images on 0-255 values, less the mean and over the std of the run's config,
// center-cropped (README, "TVM deployment"). OUTPUT receives the logits as raw float32
// values (batch x classes). --threads N runs the kernels on N threads (default 1; 0:
// every core this process may run on). --runs N also times N calls after one untimed
// call and prints their median, fastest and slowest. --extensions prints which of the
// instruction set extensions a library may need this CPU has and lacks (LLVM's names,
// as tools/tvm_compile.py --target takes CPUs named by them). Exit status: 0; 2 for a
// bad argument, an input file of another size, a library file missing, cut short or
// not such a library, or one compiled for a CPU with extensions this one lacks; 1 for
// an error raised inside TVM's runtime.
//
// A library holds its weights and its kernels; the steps here are those of
// octconv.deploy.load_library: load the file, make its Relax VM, initialize the VM for
// the CPU with TVM's pooled allocator, check the CPU, call "main" on one input tensor.
// The library's first call puts its weights in huge pages (the library asks Linux
// itself, octconv/deploy/hugepages.c): the second line printed gives the process's
// memory in huge pages after it (AnonHugePages).
// Beside "main" the library gives "input_shape", "cpu" (the LLVM CPU name it was
// compiled for) and "extensions", that CPU's instruction set extensions: its kernels
// would die of an illegal instruction on a CPU that lacks one, so such a library is
// refused, naming them (cpu_extensions.cc reads this CPU's). A VM holds one
// call's state: a server's request threads each make a VM of their own from the loaded
// library (vm_load_executable, vm_initialization), as load_library does, and may then
// call at once; the VMs share the library's weights.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include "cpu_extensions.h"

namespace ffi = tvm::ffi;

namespace {

constexpr int kPooledAllocator = 2;  // TVM's VirtualMachine.POOLED_ALLOCATOR
// TVM's idle workers spin this many yields before they sleep: about 5 ms here, where
// TVM's default kept a core busy for 160 ms after each call (octconv.deploy.threads)
constexpr const char* kSpinCount = "10000";

// a refused argument or file: its message, and whether to print the usage after it
struct Refusal {
  std::string message;
  bool usage = false;
};

// 64-byte aligned host memory for the input tensor, as TVM allocates its own
struct AlignedAlloc {
  void AllocData(DLTensor* tensor) {
    size_t bytes = (ffi::GetDataSize(*tensor) + 63) / 64 * 64;
    tensor->data = std::aligned_alloc(64, std::max<size_t>(bytes, 64));
  }
  void FreeData(DLTensor* tensor) { std::free(tensor->data); }
};

int available_cores() {
  cpu_set_t set;
  return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
}

int count_option(const std::string& name, const char* value, int least) {
  char* end = nullptr;
  long count = value ? std::strtol(value, &end, 10) : -1;
  if (!value || *end != '\0' || end == value || count < least || count > 1 << 20) {
    throw Refusal{name + " takes a whole number of at least " + std::to_string(least) +
                  ", got " + (value ? value : "nothing"), true};
  }
  return static_cast<int>(count);
}

std::string dims(ffi::ShapeView shape) {
  std::string text;
  for (int64_t d : shape) text += (text.empty() ? "" : " x ") + std::to_string(d);
  return text;
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Refusal{"cannot read " + path};
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

// Writes ``size`` bytes to ``path`` through a temporary file beside it, renamed over it
// once complete, so that a failed or killed write leaves what ``path`` held before
void write_atomically(const std::string& path, const char* bytes, size_t size) {
  std::string temporary = path + ".tmp-" + std::to_string(getpid());
  std::ofstream out(temporary, std::ios::binary);
  out.write(bytes, static_cast<std::streamsize>(size));
  out.close();
  if (!out || std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    throw Refusal{"cannot write " + path};
  }
}

// Whether the file at ``path``, a 64-bit ELF shared library, ends before its section headers or a
// segment its headers place: loading such a copy (cut short by a full disk, say) maps
// pages past the end of the file, and the first read of one kills the process with
// SIGBUS. The rule of octconv.deploy.compile._cut_short; other files are left to the
// loader, which refuses them.
bool cut_short(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  uint64_t size = static_cast<uint64_t>(in.tellg());
  auto field = [&](uint64_t at, size_t bytes) {  // a little-endian field, 0 past the end
    uint64_t value = 0;
    in.seekg(static_cast<std::streamoff>(at));
    in.read(reinterpret_cast<char*>(&value), static_cast<std::streamsize>(bytes));
    in.clear();
    return value;
  };
  char magic[6] = {};
  in.seekg(0);
  in.read(magic, 6);
  if (size < 64 || std::memcmp(magic, "\x7f" "ELF\x02\x01", 6) != 0) return false;
  uint64_t program = field(32, 8), sections = field(40, 8);
  uint64_t entry = field(54, 2), entries = field(56, 2);
  if (sections + field(58, 2) * field(60, 2) > size || program + entry * entries > size) {
    return true;
  }
  for (uint64_t i = 0; i < entries; ++i) {  // each segment's offset and size in the file
    uint64_t at = program + i * entry;
    if (field(at + 8, 8) + field(at + 32, 8) > size) return true;
  }
  return false;
}

// Has TVM's parallel loops use ``threads`` workers, sizing its pool first (the first
// configuration makes it); returns the count TVM reports it then uses
int use_threads(int threads) {
  std::string size = std::to_string(std::max(threads, available_cores()));
  setenv("TVM_NUM_THREADS", size.c_str(), 1);
  setenv("TVM_THREAD_POOL_SPIN_COUNT", kSpinCount, 0);  // unless the user set it
  ffi::Function::GetGlobalRequired("runtime.config_threadpool")(1, threads);
  return ffi::Function::GetGlobalRequired("runtime.NumThreads")().cast<int>();
}

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

// Refuses a library compiled for the CPU ``cpu`` whose extensions ``listed`` (comma-
// separated) this CPU lacks or this program cannot check
void check_extensions(const std::string& library, const std::string& cpu,
                      const std::string& listed) {
  std::vector<std::string> missing, unknown;
  size_t start = 0;
  while (start < listed.size()) {
    size_t end = std::min(listed.find(',', start), listed.size());
    std::string name = listed.substr(start, end - start);
    std::optional<bool> has = cpu_has(name);
    if (!has) unknown.push_back(name);
    if (has && !*has) missing.push_back(name);
    start = end + 1;
  }
  if (!unknown.empty()) {
    throw Refusal{library + ": compiled for the CPU " + cpu + ", whose " + joined(unknown) +
                  " this program's table does not know (a newer LLVM's names); build "
                  "run_library from the octconv that compiled the library"};
  }
  if (!missing.empty()) {
    throw Refusal{library + ": compiled for the CPU " + cpu + ", whose " + joined(missing) +
                  " this CPU lacks; compile for this CPU (the default) or name the oldest CPU "
                  "it must run on (tools/tvm_compile.py --target)"};
  }
}

// A new Relax VM of a library (``load``: its "vm_load_executable"; the VMs of one
// library share its weights), initialized for the CPU with TVM's pooled allocator
ffi::Module make_vm(ffi::Function load) {
  ffi::Module vm = load().cast<ffi::Module>();
  vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, kPooledAllocator);
  return vm;
}

// The process's anonymous memory in huge pages, in MB (Linux's AnonHugePages); -1
// where Linux does not say (then left out of what is printed)
long huge_pages_mb() {
  std::ifstream rollup("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(rollup, line)) {
    if (line.rfind("AnonHugePages:", 0) == 0) {
      return std::strtol(line.c_str() + 14, nullptr, 10) >> 10;
    }
  }
  return -1;
}

// Prints which of the extensions a library may need this CPU has and lacks
int print_extensions() {
  std::vector<std::string> has, lacks;
  for (const std::string& name : known_extensions()) (*cpu_has(name) ? has : lacks).push_back(name);
  std::printf("has: %s\nlacks: %s\n", joined(has).c_str(), joined(lacks).c_str());
  return 0;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

int run(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--extensions") return print_extensions();
  std::vector<std::string> paths;
  int threads = 1, runs = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--threads" || arg == "--runs") {
      int value = count_option(arg, i + 1 < argc ? argv[++i] : nullptr, arg == "--runs");
      (arg == "--threads" ? threads : runs) = value;
    } else if (arg.rfind("--", 0) == 0) {
      throw Refusal{"unknown option " + arg, true};
    } else {
      paths.push_back(arg);
    }
  }
  if (paths.size() != 3) throw Refusal{"expected LIBRARY INPUT OUTPUT", true};
  const std::string &library = paths[0], &input = paths[1], &output = paths[2];
  char* found = realpath(library.c_str(), nullptr);  // (a bare name: not the loader's path)
  if (!found) throw Refusal{"no compiled library at " + library};
  std::string library_path = found;
  std::free(found);
  threads = threads ? threads : available_cores();
  threads = use_threads(threads);

  if (cut_short(library_path)) {
    throw Refusal{library + " is cut short (its headers point past its end); copy or export "
                  "it again"};
  }
  std::optional<ffi::Module> file;
  try {
    file = ffi::Module::LoadFromFile(library_path);
  } catch (const ffi::Error& error) {  // not a shared library
    throw Refusal{library + " is not a library of tools/tvm_compile.py: " + error.message()};
  }
  auto load = (*file)->GetFunction("vm_load_executable");
  if (!load) throw Refusal{library + " is not a library of tools/tvm_compile.py (no Relax VM)"};
  ffi::Module vm = make_vm(*load);
  auto recorded_shape = vm->GetFunction("input_shape");
  if (!recorded_shape) throw Refusal{library + " records no input shape; compile it again"};
  ffi::Shape shape = (*recorded_shape)().cast<ffi::Shape>();
  std::string cpu = vm->GetFunction("cpu").value()().cast<ffi::String>();
  auto listed = vm->GetFunction("extensions");
  if (!listed) {
    throw Refusal{library + " lists no instruction set extensions (made before libraries did); "
                  "compile it again"};
  }
  check_extensions(library, cpu, (*listed)().cast<ffi::String>());
  ffi::Function main_function = vm->GetFunction("main").value();

  ffi::Tensor x = ffi::Tensor::FromNDAlloc(AlignedAlloc(), shape, DLDataType{kDLFloat, 32, 1},
                                           DLDevice{kDLCPU, 0});
  size_t bytes = ffi::GetDataSize(*x.GetDLTensorPtr());
  std::vector<char> data = read_file(input);
  if (data.size() != bytes) {
    throw Refusal{input + " holds " + std::to_string(data.size()) + " bytes; the library takes " +
                  dims(shape) + " float32 values (" + std::to_string(bytes) + " bytes)"};
  }
  std::memcpy(x.data_ptr(), data.data(), bytes);
  std::printf("%s: input %s float32, compiled for %s, %d thread(s)\n", library.c_str(),
              dims(shape).c_str(), cpu.c_str(), threads);
  ffi::Tensor logits = main_function(x).cast<ffi::Tensor>();  // (the weights advised)
  long held = huge_pages_mb();
  std::printf("huge pages: %s\n", held >= 0 ? ("the process has " + std::to_string(held) +
                                                " MB in them").c_str() : "not counted here");
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    auto start = std::chrono::steady_clock::now();
    logits = main_function(x).cast<ffi::Tensor>();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                           start).count());
  }
  write_atomically(output, static_cast<const char*>(logits.data_ptr()),
                   ffi::GetDataSize(*logits.GetDLTensorPtr()));
  std::printf("logits %s float32 -> %s\n", dims(logits.shape()).c_str(), output.c_str());
  if (runs) {
    std::printf("%d calls: median %.3f ms (%.3f-%.3f), %.1f images/s\n", runs, median(ms),
                *std::min_element(ms.begin(), ms.end()), *std::max_element(ms.begin(), ms.end()),
                1e3 * static_cast<double>(shape[0]) / median(ms));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const Refusal& refusal) {
    std::fprintf(stderr, "error: %s\n%s", refusal.message.c_str(), refusal.usage ?
                 "usage: run_library LIBRARY INPUT OUTPUT [--threads N] [--runs N]\n"
                 "       run_library --extensions\n" : "");
    return 2;
  } catch (const ffi::Error& error) {
    std::fprintf(stderr, "error: %s: %s\n", error.kind().c_str(), error.message().c_str());
    return 1;
  }
}
