// fp32 <-> its IEEE bits, for kernels that round or build floats with integer arithmetic
// (sample.cpp's exp, nf4_bf16.cpp's bf16 rounding).
#pragma once
#include <cstdint>
#include <cstring>

namespace lora4j::cpu {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float f32_of_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace lora4j::cpu
