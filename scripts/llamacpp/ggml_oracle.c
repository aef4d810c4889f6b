// ggml's own quantizers, taken from the shared libraries that node-llama-cpp@3.21.1 ships (its prebuilt
// llama.cpp), as the reference that lora4j's Java quantizers and q4_K_M tensor-type rule are checked against.
// Nothing here re-implements ggml: it loads libggml-base.so / libllama.so with dlopen and calls them.
//
//   ggml_oracle LIBDIR rows TYPE N IN.f32 OUT.bin    quantize_row_<TYPE>_ref over rows of N fp32 values
//   ggml_oracle LIBDIR dequant TYPE N IN.bin OUT.f32  dequantize_row_<TYPE> over rows of N values
//   ggml_oracle LIBDIR quantize FTYPE IN.gguf OUT.gguf  llama_model_quantize (llama-quantize) to llama_ftype FTYPE
//
// TYPE: q8_0 q4_0 q5_0 q4_K q6_K. Build: cc -O2 -o ggml_oracle ggml_oracle.c -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *open_lib(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        fprintf(stderr, "ggml_oracle: %s\n", dlerror());
        exit(2);
    }
    return h;
}

static void *sym(void *lib, const char *name) {
    void *f = dlsym(lib, name);
    if (!f) {
        fprintf(stderr, "ggml_oracle: no symbol %s\n", name);
        exit(2);
    }
    return f;
}

// Block bytes per 32 or 256 elements (ggml-common.h).
static int block_bytes(const char *type, int *block) {
    if (!strcmp(type, "q8_0")) { *block = 32; return 34; }
    if (!strcmp(type, "q4_0")) { *block = 32; return 18; }
    if (!strcmp(type, "q5_0")) { *block = 32; return 22; }
    if (!strcmp(type, "q4_K")) { *block = 256; return 144; }
    if (!strcmp(type, "q6_K")) { *block = 256; return 210; }
    return 0;
}

// The whole of file `path` (exits on failure); its size in *bytes.
static unsigned char *read_all(const char *path, long *bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    *bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*bytes > 0 ? *bytes : 1);
    if (fread(b, 1, *bytes, f) != (size_t)*bytes) { perror(path); exit(2); }
    fclose(f);
    return b;
}

static void write_all(const char *path, const void *b, long bytes) {
    FILE *o = fopen(path, "wb");
    if (!o || fwrite(b, 1, bytes, o) != (size_t)bytes) { perror(path); exit(2); }
    fclose(o);
}

// quantize_row_<type>_ref (quantize) or dequantize_row_<type> (!quantize) over every row of n values in `in`.
static int convert_rows(const char *dir, int quantize, const char *type, long n, const char *in, const char *out) {
    int block = 0, bb = block_bytes(type, &block);
    if (!bb || n <= 0 || n % block) {
        fprintf(stderr, "ggml_oracle: bad type %s or row length %ld\n", type, n);
        return 2;
    }
    void *base = open_lib(dir, "libggml-base.so");
    char name[64];
    snprintf(name, sizeof name, quantize ? "quantize_row_%s_ref" : "dequantize_row_%s", type);
    void (*fn)(const void *, void *, int64_t) = (void (*)(const void *, void *, int64_t))sym(base, name);
    long bytes, row_bytes = n / block * bb, in_row = quantize ? 4 * n : row_bytes, out_row = quantize ? row_bytes : 4 * n;
    unsigned char *x = read_all(in, &bytes);
    if (bytes % in_row) { fprintf(stderr, "ggml_oracle: %ld bytes are not rows of %ld\n", bytes, in_row); return 2; }
    long rows = bytes / in_row;
    unsigned char *y = calloc(rows > 0 ? rows : 1, out_row);
    for (long r = 0; r < rows; r++) fn(x + r * in_row, y + r * out_row, n);
    write_all(out, y, rows * out_row);
    return 0;
}

// llama_model_quantize_params as declared in the shipped llama.h; only nthread and ftype (its first two fields)
// are set, the rest keep llama_model_quantize_default_params(). The struct is returned in memory (it is larger
// than 16 bytes), so a larger buffer here is safe.
typedef struct { int32_t nthread; int32_t ftype; unsigned char rest[256]; } quantize_params;

static int quantize(const char *dir, int ftype, const char *in, const char *out) {
    void *ggml = open_lib(dir, "libggml.v0.4.0.so");
    void (*load_all_from_path)(const char *) = (void (*)(const char *))sym(ggml, "ggml_backend_load_all_from_path");
    load_all_from_path(dir);
    void *llama = open_lib(dir, "libllama.v0.4.0.so");
    void (*backend_init)(void) = (void (*)(void))sym(llama, "llama_backend_init");
    quantize_params (*defaults)(void) = (quantize_params(*)(void))sym(llama, "llama_model_quantize_default_params");
    uint32_t (*run)(const char *, const char *, const quantize_params *) =
        (uint32_t(*)(const char *, const char *, const quantize_params *))sym(llama, "llama_model_quantize");
    backend_init();
    quantize_params p = defaults();
    p.nthread = 1;
    p.ftype = ftype;
    uint32_t rc = run(in, out, &p);
    if (rc) fprintf(stderr, "ggml_oracle: llama_model_quantize returned %u\n", rc);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 7 && !strcmp(argv[2], "rows")) return convert_rows(argv[1], 1, argv[3], atol(argv[4]), argv[5], argv[6]);
    if (argc == 7 && !strcmp(argv[2], "dequant")) return convert_rows(argv[1], 0, argv[3], atol(argv[4]), argv[5], argv[6]);
    if (argc == 6 && !strcmp(argv[2], "quantize")) return quantize(argv[1], atoi(argv[3]), argv[4], argv[5]);
    fprintf(stderr, "usage: ggml_oracle LIBDIR rows|dequant TYPE N IN OUT | ggml_oracle LIBDIR quantize FTYPE IN.gguf OUT.gguf\n");
    return 2;
}
