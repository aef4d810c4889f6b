// lora4j CUDA emulator: half types live in cuda_runtime.h (see there).
#pragma once
#include "cuda_runtime.h"
