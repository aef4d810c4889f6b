/* How another process puts the emulated liblora4j.so in place of the real one: load it by
   path first (Java: System.load(path) before JavaCPP loads its JNI glue); a later library
   that NEEDs liblora4j.so then binds to it by soname. Usage: soname_check EMU_LIB GLUE_LIB.
   Exit 0 when the glue reaches the emulated device, and cannot be loaded without it. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: soname_check EMU_LIB GLUE_LIB\n");
    return 2;
  }
  if (dlopen(argv[2], RTLD_NOW)) {
    printf("FAIL the glue loaded without liblora4j.so preloaded (an RPATH?): the check proves nothing\n");
    return 1;
  }
  if (!dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL)) {
    printf("FAIL loading %s: %s\n", argv[1], dlerror());
    return 1;
  }
  void* g = dlopen(argv[2], RTLD_NOW);
  if (!g) {
    printf("FAIL loading the glue after the emulated library: %s\n", dlerror());
    return 1;
  }
  int32_t (*count)(void) = (int32_t (*)(void))dlsym(g, "glue_device_count");
  const char* (*info)(void) = (const char* (*)(void))dlsym(g, "glue_device_info");
  const int32_t n = count();
  const char* what = n > 0 ? info() : "";
  const int ok = n == 1 && strstr(what, "cuda (emulated)") != NULL;
  printf("%s soname binding: device count %d via the glue, %s\n", ok ? "ok" : "FAIL", n, what);
  return ok ? 0 : 1;
}
