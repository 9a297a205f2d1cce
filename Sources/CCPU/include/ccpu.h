// What the processor is and what it can do: CPUID (with the OS's consent to use wide
// registers, from XGETBV) and a fused multiply-add loop per vector width, for the peak.
#ifndef CCPU_H
#define CCPU_H

#include <stdint.h>

typedef struct {
  char vendor[13];
  char brand[49];
  int family;  // display family (base + extended)
  int model;   // display model (base + extended << 4)
  int stepping;
  // Instruction sets, each only when the OS also saves the registers it needs.
  int sse3, ssse3, sse41, sse42, avx, fma, avx2;
  int avx512f, avx512cd, avx512bw, avx512dq, avx512vl, avx512bf16, avx512fp16;
  int amx;  // AMX tiles (TMUL)
} ccpu_info;

/// Fills `info`; on a processor that is not x86-64 every field is zero.
void ccpu_identify(ccpu_info *info);

/// Runs `iterations` rounds of independent FMAs on registers of `width` floats (8: AVX2 +
/// FMA3, 16: AVX-512) and returns the floating-point operations done (a multiply–add is two),
/// or 0 when the width is not available. Whatever the compiler, the loop stays in registers.
double ccpu_fma_loop(int width, int64_t iterations);

#endif
