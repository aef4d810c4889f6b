// lora4j CUDA emulator: bf16 types live in cuda_runtime.h (see there).
#pragma once
#include "cuda_runtime.h"
