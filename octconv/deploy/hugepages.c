/* A compiled library's weights in 2 MB pages (Linux's transparent huge pages).

   Linked into every library that octconv.deploy.compile builds. The library's Relax
   `main` starts with a call of its `advise_weights` function (made by
   octconv.deploy.hugepages.advise_function), which is given every weight array: on the
   library's first call, and only then, it notes the memory of each array here and asks
   Linux to back that memory with huge pages, so that the library does so however it is
   loaded (TVM's Python or C++ runtime, octconv's load_library, tools/cpp/run_library).
   The arrays' spans are widened to whole pages, those less than GAP bytes
   apart joined (malloc's headers and alignment between arrays allocated one after the
   other), then advised: madvise(MADV_HUGEPAGE), then madvise(MADV_COLLAPSE) (Linux 6.1
   and later) to move the pages now rather than when khugepaged gets to them. It is a
   hint: where Linux refuses (huge pages switched off, none free, an older kernel) the
   library runs as before.

   The functions are hidden, so that each library binds to its own copy and its own
   state in a process that loads several. Only octconv_merge_spans is visible when built
   with -DOCTCONV_VISIBLE (for the tests). */
#define _DEFAULT_SOURCE /* madvise */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

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

static int state;      /* 0: not advised; 1: being advised (by one caller); 2: advised */
static span_t* spans;  /* the first call's noted arrays */
static int64_t count, capacity;

/* Whether this caller is the first: it then notes every array and advises them. */
HIDDEN int32_t octconv_advise_first(void) {
  int expected = 0;
  return __atomic_compare_exchange_n(&state, &expected, 1, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE);
}

/* Note the `bytes` bytes of an array at `data`. */
HIDDEN int32_t octconv_advise_note(void* data, int64_t bytes) {
  if (count == capacity) {
    int64_t more = capacity ? 2 * capacity : 256;
    span_t* grown = (span_t*)realloc(spans, (size_t)more * sizeof(span_t));
    if (grown == NULL) return -1; /* (what was noted is advised) */
    spans = grown;
    capacity = more;
  }
  spans[count].start = (uintptr_t)data;
  spans[count].end = (uintptr_t)data + (uintptr_t)bytes;
  count++;
  return 0;
}

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

/* Advise the noted arrays' memory into huge pages; later calls advise nothing. */
HIDDEN int32_t octconv_advise_noted(void) {
  int64_t merged = octconv_merge_spans(spans, count, GAP);
  for (int64_t j = 0; j < merged; j++) {
#ifdef __linux__ /* (the advice's numbers are Linux's) */
    size_t length = spans[j].end - spans[j].start;
    madvise((void*)spans[j].start, length, MADV_HUGEPAGE); /* errors: it is a hint */
    madvise((void*)spans[j].start, length, MADV_COLLAPSE);
#endif
  }
  free(spans);
  spans = NULL;
  count = capacity = 0;
  __atomic_store_n(&state, 2, __ATOMIC_RELEASE);
  return 0;
}
