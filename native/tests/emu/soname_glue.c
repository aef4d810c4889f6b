/* Stand-in for the JavaCPP JNI glue: a library whose NEEDED entry is liblora4j.so and that
   has no RPATH, so the dynamic linker can only satisfy it with an already loaded object of
   that soname (see soname_check.c). */
#include <stdint.h>
int32_t lora4j_cuda_device_count(void);
const char* lora4j_cuda_device_info(int32_t dev);
int32_t glue_device_count(void) { return lora4j_cuda_device_count(); }
const char* glue_device_info(void) { return lora4j_cuda_device_info(0); }
