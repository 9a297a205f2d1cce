#include "ccpu.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

static void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}

static unsigned long long xgetbv0(void) {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((unsigned long long)edx << 32) | eax;
}

void ccpu_identify(ccpu_info *info) {
  memset(info, 0, sizeof *info);
  unsigned r[4];
  cpuid(0, 0, r);
  unsigned maxLeaf = r[0];
  memcpy(info->vendor, &r[1], 4);
  memcpy(info->vendor + 4, &r[3], 4);
  memcpy(info->vendor + 8, &r[2], 4);

  cpuid(1, 0, r);
  unsigned eax = r[0], ecx = r[2];
  int base = (eax >> 8) & 0xf;
  info->family = base + (base == 0xf ? (eax >> 20) & 0xff : 0);
  info->model = ((eax >> 4) & 0xf) | ((base == 0x6 || base == 0xf) ? ((eax >> 16) & 0xf) << 4 : 0);
  info->stepping = eax & 0xf;
  info->sse3 = (ecx >> 0) & 1;
  info->ssse3 = (ecx >> 9) & 1;
  info->sse41 = (ecx >> 19) & 1;
  info->sse42 = (ecx >> 20) & 1;

  // AVX needs the OS to save YMM state (XCR0 bits 1, 2); AVX-512 also opmask and ZMM (5–7);
  // AMX the tile configuration and data (17, 18).
  int osxsave = (ecx >> 27) & 1;
  unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
  int ymm = (xcr0 & 0x6) == 0x6;
  int zmm = ymm && (xcr0 & 0xe0) == 0xe0;
  int tiles = (xcr0 & 0x60000) == 0x60000;
  info->avx = ymm && ((ecx >> 28) & 1);
  info->fma = info->avx && ((ecx >> 12) & 1);

  if (maxLeaf >= 7) {
    cpuid(7, 0, r);
    unsigned ebx = r[1], edx = r[3];
    info->avx2 = info->avx && ((ebx >> 5) & 1);
    info->avx512f = zmm && ((ebx >> 16) & 1);
    info->avx512dq = info->avx512f && ((ebx >> 17) & 1);
    info->avx512cd = info->avx512f && ((ebx >> 28) & 1);
    info->avx512bw = info->avx512f && ((ebx >> 30) & 1);
    info->avx512vl = info->avx512f && ((ebx >> 31) & 1);
    info->avx512fp16 = info->avx512f && ((edx >> 23) & 1);
    info->amx = tiles && ((edx >> 24) & 1) && ((edx >> 22) & 1);
    unsigned subLeaves = r[0];
    if (subLeaves >= 1) {
      cpuid(7, 1, r);
      info->avx512bf16 = info->avx512f && ((r[0] >> 5) & 1);
    }
  }

  cpuid(0x80000000, 0, r);
  if (r[0] >= 0x80000004) {
    for (unsigned i = 0; i < 3; i++) {
      cpuid(0x80000002 + i, 0, r);
      memcpy(info->brand + 16 * i, r, 16);
    }
  }
}

// Twelve independent accumulators: more than latency × throughput (4 × 2) of any current
// core, so the loop runs at the FMA units' rate, not at their latency.
#define FMA_CHAINS 12

__attribute__((target("avx2,fma"))) static double loop8(int64_t iterations) {
  __m256 acc[FMA_CHAINS];
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
  for (int64_t n = 0; n < iterations; n++) {
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]), "+x"(acc[4]), "+x"(acc[5]),
                     "+x"(acc[6]), "+x"(acc[7]), "+x"(acc[8]), "+x"(acc[9]), "+x"(acc[10]), "+x"(acc[11]));
  }
  volatile float sink = 0;
  for (int i = 0; i < FMA_CHAINS; i++) sink += _mm256_cvtss_f32(acc[i]);
  (void)sink;
  return (double)iterations * FMA_CHAINS * 8 * 2;
}

__attribute__((target("avx512f"))) static double loop16(int64_t iterations) {
  __m512 acc[FMA_CHAINS];
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
  for (int64_t n = 0; n < iterations; n++) {
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]),
                     "+v"(acc[6]), "+v"(acc[7]), "+v"(acc[8]), "+v"(acc[9]), "+v"(acc[10]), "+v"(acc[11]));
  }
  volatile float sink = 0;
  for (int i = 0; i < FMA_CHAINS; i++) sink += _mm512_reduce_add_ps(acc[i]);
  (void)sink;
  return (double)iterations * FMA_CHAINS * 16 * 2;
}

double ccpu_fma_loop(int width, int64_t iterations) {
  ccpu_info info;
  ccpu_identify(&info);
  if (width == 8 && info.avx2 && info.fma) return loop8(iterations);
  if (width == 16 && info.avx512f) return loop16(iterations);
  return 0;
}

#else

void ccpu_identify(ccpu_info *info) { memset(info, 0, sizeof *info); }
double ccpu_fma_loop(int width, int64_t iterations) { (void)width; (void)iterations; return 0; }

#endif
