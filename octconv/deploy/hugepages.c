/* A compiled library's weights in 2 MB pages (Linux's transparent huge pages).

   Linked into every library that octconv.deploy.compile builds. The library's Relax
   `main` starts by calling its packed function `advise_weights` (defined here, in the
   TVM FFI's calling convention, as TVM's own kernels are) with every weight array: on
   the library's first call, and only then, it asks Linux to back the memory of those
   arrays with huge pages, so that the library does so however it is loaded (TVM's
   Python or C++ runtime, octconv's load_library, tools/cpp/run_library). The arrays'
   spans are widened to whole pages, those less than GAP bytes apart joined (malloc's
   headers and alignment between arrays allocated one after the other), then advised:
   madvise(MADV_HUGEPAGE), then madvise(MADV_COLLAPSE) (Linux 6.1 and later) to move
   the pages now rather than when khugepaged gets to them. It is a hint: where Linux
   refuses (huge pages switched off, none free, an older kernel) the library runs as
   before.

   Each library binds to its own copy and its own state in a process that loads
   several: the state is static, the helpers hidden, and TVM finds `advise_weights` in
   the library it loaded. octconv_merge_spans is visible only when built with
   -DOCTCONV_VISIBLE (for the tests). */
#define _DEFAULT_SOURCE /* madvise */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <tvm/ffi/c_api.h>

#ifndef MADV_HUGEPAGE
#define MADV_HUGEPAGE 14
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define HIDDEN __attribute__((visibility("hidden")))
#ifdef OCTCONV_VISIBLE
#define TESTED __attribute__((visibility("default")))
#else
#define TESTED HIDDEN
#endif

/* spans of memory closer than this are advised as one (malloc's headers and alignment
   between arrays allocated one after the other) */
enum { PAGE = 4096, GAP = 64 << 10 };

typedef struct { uintptr_t start, end; } span_t;

static int advised; /* set by the first call */

static int by_start(const void* a, const void* b) {
  uintptr_t x = ((const span_t*)a)->start, y = ((const span_t*)b)->start;
  return (x > y) - (x < y);
}

/* The `n` spans at `s` widened to whole pages, those less than `gap` bytes apart joined,
   sorted: written over the first ones; returns their count. Empty spans are dropped. */
TESTED int64_t octconv_merge_spans(span_t* s, int64_t n, int64_t gap) {
  int64_t kept = 0, merged = 0;
  for (int64_t j = 0; j < n; j++) {
    if (s[j].end > s[j].start) {
      span_t page = {s[j].start / PAGE * PAGE, (s[j].end + PAGE - 1) / PAGE * PAGE};
      s[kept++] = page;
    }
  }
  qsort(s, (size_t)kept, sizeof(span_t), by_start);
  for (int64_t j = 0; j < kept; j++) {
    if (merged && s[j].start < s[merged - 1].end + (uintptr_t)gap) {
      if (s[j].end > s[merged - 1].end) s[merged - 1].end = s[j].end;
    } else {
      s[merged++] = s[j];
    }
  }
  return merged;
}

/* The memory of the array `arg` (a tensor object or a DLTensor pointer); 0 and 0 for
   anything else. */
static span_t array_span(const TVMFFIAny* arg) {
  const DLTensor* t = NULL;
  span_t span = {0, 0};
  if (arg->type_index == kTVMFFITensor) { /* a DLTensor follows the object's header */
    t = (const DLTensor*)((const char*)arg->v_obj + sizeof(TVMFFIObject));
  } else if (arg->type_index == kTVMFFIDLTensorPtr) {
    t = (const DLTensor*)arg->v_ptr;
  }
  if (t != NULL && t->data != NULL) {
    uint64_t bytes = ((uint64_t)t->dtype.bits * t->dtype.lanes + 7) / 8;
    for (int32_t d = 0; d < t->ndim; d++) bytes *= (uint64_t)t->shape[d];
    span.start = (uintptr_t)t->data + (uintptr_t)t->byte_offset;
    span.end = span.start + (uintptr_t)bytes;
  }
  return span;
}

/* advise_weights(*arrays): on the library's first call, advise the arrays' memory into
   huge pages; later calls (and calls racing the first) do nothing. Returns nothing. */
TVM_FFI_DLL_EXPORT int __tvm_ffi_advise_weights(void* self, const TVMFFIAny* args,
                                                int32_t num_args, TVMFFIAny* result) {
  (void)self;
  (void)result; /* (None, as the caller set it) */
  if (__atomic_exchange_n(&advised, 1, __ATOMIC_ACQ_REL)) return 0;
  span_t* spans = (span_t*)malloc((size_t)(num_args > 0 ? num_args : 1) * sizeof(span_t));
  if (spans == NULL) return 0; /* (a hint: nothing advised) */
  for (int32_t j = 0; j < num_args; j++) spans[j] = array_span(&args[j]);
  int64_t merged = octconv_merge_spans(spans, num_args, GAP);
  for (int64_t j = 0; j < merged; j++) {
#ifdef __linux__ /* (the advice's numbers are Linux's) */
    size_t length = spans[j].end - spans[j].start;
    madvise((void*)spans[j].start, length, MADV_HUGEPAGE); /* errors: it is a hint */
    madvise((void*)spans[j].start, length, MADV_COLLAPSE);
#endif
  }
  free(spans);
  return 0;
}
