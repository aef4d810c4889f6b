// Built only when no CUDA compiler was found. The device probe answers 0 devices, so the Java
// side picks the CPU backend and says why. Every other lora4j_cuda_* entry is a stub that throws,
// generated at build time from the headers by scripts/gen_nocuda.py (it leaves out what this file
// defines).
#include "lora4j/runtime.h"

extern "C" {
int32_t lora4j_cuda_device_count(void) { return 0; }
}  // extern "C"
