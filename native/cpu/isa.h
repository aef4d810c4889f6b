// Run-time SIMD dispatch shared by the CPU decode kernels (decode.cpp) and the NF4 GEMV/dequant
// (nf4.cpp): one choice per process, from CPUID and LORA4J_DECODE_ISA.
#pragma once

namespace lora4j::cpu {

enum class Isa { kScalar, kAvx2, kAvx512 };

// AVX-512F when the CPU has it, else AVX2+FMA, else scalar. LORA4J_DECODE_ISA=scalar|avx2|avx512
// forces a path; a forced path the CPU lacks, or an unknown name, throws. Chosen on the first
// call (thread-safe) and fixed for the process.
Isa simd_isa();

// Whether the CPU has AVX512_BF16 (vdpbf16ps) and LORA4J_AVX512_BF16 is not "0". The avx512 path
// uses it where present; LORA4J_AVX512_BF16=0 (tests), or forcing LORA4J_DECODE_ISA=avx2 or scalar,
// takes the emulation of the same arithmetic instead.
bool has_avx512_bf16();

// "scalar", "avx2" or "avx512".
const char* isa_name(Isa isa);

}  // namespace lora4j::cpu
