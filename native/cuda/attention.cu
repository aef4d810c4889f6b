// Causal grouped-query attention, CUDA, flash-attention style (no [S, S] matrix in global
// memory). CPU twin and oracle: native/cpu/attention.cpp; the math is in ops.h:
//
//   allowed(i, j) = j <= i && (seg == null || seg[b*S+j] == seg[b*S+i]);  scale = 1/sqrt(D)
//   forward (per query tile, online softmax over key tiles):
//     S_ij = (scale q_i) . k_j [softcap c > 0: c tanh(S_ij / c)];  m' = max(m, max_j S_ij);
//     P_ij = exp(S_ij - m')
//     l = l exp(m - m') + sum_j P_ij;   o = o exp(m - m') + sum_j P_ij v_j
//     out_i = o / l;  lse_i = m + log l                          lse: [B, Hq, S]
//   backward (P recomputed from lse, Dl_i = dout_i . out_i computed per tile):
//     P_ij = exp(S_ij - lse_i);  dP_ij = dout_i . v_j;  dS_ij = P_ij (dP_ij - Dl_i)
//     [softcap: dS_ij times 1 - (S_ij / c)^2, S_ij the capped score]
//     kernel dkdv, one block per (key tile, kv head, batch), looping over the query heads
//     of the group and the query tiles at or below the diagonal:
//       dv_j = sum_i P_ij dout_i;   dk_j = sum_i dS_ij (scale q_i)
//     kernel dq, one block per (query tile, query head, batch), looping over key tiles:
//       dq_i = scale sum_j dS_ij k_j
//   Two kernels instead of atomics: deterministic, and no workspace is needed.
// Layout: q/out/dq/dout [B*S, Hq*D], k/v/dk/dv [B*S, Hkv*D] row-major. Shared-memory tiles of
// TILE rows (32 for D <= 128, 16 for D <= 256); K/V rows padded to D+1 floats so the per-key
// dot products of a warp hit distinct banks. 128 threads per block.
#include "lora4j/ops.h"
#include "cuda/cuda_common.cuh"

namespace {

constexpr int kThreads = 128;
constexpr int kMaxD = 256;

__device__ __forceinline__ bool allowed(const int32_t* sg, int64_t S, int64_t i, int64_t j) {
  return i < S && j <= i && (sg == nullptr || sg[i] == sg[j]);
}

// The score s soft-capped to c tanh(s / c); c = 0: s itself.
__device__ __forceinline__ float capped(float s, float c) {
  return c > 0.0f ? c * tanhf(s / c) : s;
}

// dS through the cap at the capped score s: dS (1 - (s / c)^2); c = 0: dS itself.
__device__ __forceinline__ float through_cap(float ds, float s, float c) {
  if (c <= 0.0f) return ds;
  const float t = s / c;
  return ds * (1.0f - t * t);
}

template <int TILE>
__global__ void __launch_bounds__(kThreads)
attn_fwd_kernel(const float* __restrict__ q, const float* __restrict__ k,
                const float* __restrict__ v, const int32_t* __restrict__ seg, int64_t S,
                int64_t Hq, int64_t Hkv, int D, float scale, float softcap,
                float* __restrict__ out, float* __restrict__ lse) {
  LORA4J_DYNAMIC_SHARED(float, smem);
  float* Qs = smem;                          // [TILE][D]   scale * q
  float* Ks = Qs + TILE * D;                 // [TILE][D+1]
  float* Vs = Ks + TILE * (D + 1);           // [TILE][D]
  float* Ss = Vs + TILE * D;                 // [TILE][TILE+1] scores, then P
  float* Os = Ss + TILE * (TILE + 1);        // [TILE][D]
  float* mS = Os + TILE * D;                 // [TILE]
  float* lS = mS + TILE;                     // [TILE]
  float* aS = lS + TILE;                     // [TILE] rescale factor of this step
  const int tid = threadIdx.x;
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = static_cast<int64_t>(blockIdx.x) * TILE;
  const int64_t hk = h / (Hq / Hkv);
  const int64_t ldq = Hq * D, ldk = Hkv * D;
  const int32_t* sg = seg ? seg + b * S : nullptr;
  for (int e = tid; e < TILE * D; e += kThreads) {
    const int ii = e / D, d = e % D;
    const int64_t i = i0 + ii;
    Qs[e] = i < S ? q[(b * S + i) * ldq + h * D + d] * scale : 0.0f;
    Os[e] = 0.0f;
  }
  if (tid < TILE) {
    mS[tid] = -INFINITY;
    lS[tid] = 0.0f;
  }
  const int64_t jend = (i0 + TILE < S ? i0 + TILE : S);
  for (int64_t j0 = 0; j0 < jend; j0 += TILE) {
    __syncthreads();  // previous tile's Ks/Vs/Ss fully consumed
    for (int e = tid; e < TILE * D; e += kThreads) {
      const int jj = e / D, d = e % D;
      const int64_t j = j0 + jj;
      const bool in = j < S;
      Ks[jj * (D + 1) + d] = in ? k[(b * S + j) * ldk + hk * D + d] : 0.0f;
      Vs[jj * D + d] = in ? v[(b * S + j) * ldk + hk * D + d] : 0.0f;
    }
    __syncthreads();
    for (int e = tid; e < TILE * TILE; e += kThreads) {
      const int ii = e / TILE, jj = e % TILE;
      float s = -INFINITY;
      if (allowed(sg, S, i0 + ii, j0 + jj)) {
        s = 0.0f;
        for (int d = 0; d < D; d++) s = fmaf(Qs[ii * D + d], Ks[jj * (D + 1) + d], s);
        s = capped(s, softcap);
      }
      Ss[ii * (TILE + 1) + jj] = s;
    }
    __syncthreads();
    if (tid < TILE) {
      float* row = Ss + tid * (TILE + 1);
      float mx = -INFINITY;
      for (int jj = 0; jj < TILE; jj++) mx = fmaxf(mx, row[jj]);
      if (mx == -INFINITY) {
        for (int jj = 0; jj < TILE; jj++) row[jj] = 0.0f;
        aS[tid] = 1.0f;
      } else {
        const float mold = mS[tid];
        const float mnew = fmaxf(mold, mx);
        const float alpha = mold == -INFINITY ? 0.0f : expf(mold - mnew);
        float sum = 0.0f;
        for (int jj = 0; jj < TILE; jj++) {
          const float p = expf(row[jj] - mnew);  // -inf -> 0
          row[jj] = p;
          sum += p;
        }
        lS[tid] = lS[tid] * alpha + sum;
        mS[tid] = mnew;
        aS[tid] = alpha;
      }
    }
    __syncthreads();
    for (int e = tid; e < TILE * D; e += kThreads) {
      const int ii = e / D, d = e % D;
      float o = Os[e] * aS[ii];
      const float* prow = Ss + ii * (TILE + 1);
      for (int jj = 0; jj < TILE; jj++) o = fmaf(prow[jj], Vs[jj * D + d], o);
      Os[e] = o;
    }
  }
  __syncthreads();
  for (int e = tid; e < TILE * D; e += kThreads) {
    const int ii = e / D, d = e % D;
    const int64_t i = i0 + ii;
    if (i < S) out[(b * S + i) * ldq + h * D + d] = Os[e] / lS[ii];
  }
  if (tid < TILE && i0 + tid < S) lse[(b * Hq + h) * S + i0 + tid] = mS[tid] + logf(lS[tid]);
}

// Loads rows i0.. of (scale*q), dout, lse and computes Dl_i = dout_i . out_i for one head.
// Qs/dOs have row stride ld_s (D or D+1).
template <int TILE>
__device__ void load_query_tile(const float* __restrict__ q, const float* __restrict__ out,
                                const float* __restrict__ dout, const float* __restrict__ lse,
                                int64_t b, int64_t h, int64_t i0, int64_t S, int64_t Hq, int D,
                                float scale, float* Qs, float* dOs, int ld_s, float* lseS,
                                float* DlS) {
  const int tid = threadIdx.x;
  const int64_t ldq = Hq * D;
  for (int e = tid; e < TILE * D; e += kThreads) {
    const int ii = e / D, d = e % D;
    const int64_t i = i0 + ii;
    const bool in = i < S;
    Qs[ii * ld_s + d] = in ? q[(b * S + i) * ldq + h * D + d] * scale : 0.0f;
    dOs[ii * ld_s + d] = in ? dout[(b * S + i) * ldq + h * D + d] : 0.0f;
  }
  const int lane = tid & 31, warp = tid >> 5;
  for (int ii = warp; ii < TILE; ii += kThreads / 32) {
    const int64_t i = i0 + ii;
    float acc = 0.0f;
    if (i < S) {
      const float* o = out + (b * S + i) * ldq + h * D;
      const float* g = dout + (b * S + i) * ldq + h * D;
      for (int d = lane; d < D; d += 32) acc = fmaf(o[d], g[d], acc);
    }
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) {
      DlS[ii] = acc;
      lseS[ii] = i < S ? lse[(b * Hq + h) * S + i] : 0.0f;
    }
  }
}

template <int TILE>
__global__ void __launch_bounds__(kThreads)
attn_bwd_dkdv_kernel(const float* __restrict__ q, const float* __restrict__ k,
                     const float* __restrict__ v, const float* __restrict__ out,
                     const float* __restrict__ dout, const float* __restrict__ lse,
                     const int32_t* __restrict__ seg, int64_t S, int64_t Hq, int64_t Hkv, int D,
                     float scale, float softcap, float* __restrict__ dk, float* __restrict__ dv) {
  LORA4J_DYNAMIC_SHARED(float, smem);
  const int ld = D + 1;
  float* Ks = smem;                       // [TILE][D+1]
  float* Vs = Ks + TILE * ld;             // [TILE][D+1]
  float* Qs = Vs + TILE * ld;             // [TILE][D+1] scale * q
  float* dOs = Qs + TILE * ld;            // [TILE][D+1]
  float* dKs = dOs + TILE * ld;           // [TILE][D]
  float* dVs = dKs + TILE * D;            // [TILE][D]
  float* Ps = dVs + TILE * D;             // [TILE][TILE+1]
  float* dSs = Ps + TILE * (TILE + 1);    // [TILE][TILE+1]
  float* lseS = dSs + TILE * (TILE + 1);  // [TILE]
  float* DlS = lseS + TILE;               // [TILE]
  const int tid = threadIdx.x;
  const int64_t b = blockIdx.z, hk = blockIdx.y, j0 = static_cast<int64_t>(blockIdx.x) * TILE;
  const int64_t group = Hq / Hkv, ldk = Hkv * D;
  const int32_t* sg = seg ? seg + b * S : nullptr;
  for (int e = tid; e < TILE * D; e += kThreads) {
    const int jj = e / D, d = e % D;
    const int64_t j = j0 + jj;
    const bool in = j < S;
    Ks[jj * ld + d] = in ? k[(b * S + j) * ldk + hk * D + d] : 0.0f;
    Vs[jj * ld + d] = in ? v[(b * S + j) * ldk + hk * D + d] : 0.0f;
    dKs[e] = 0.0f;
    dVs[e] = 0.0f;
  }
  for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
    for (int64_t i0 = j0; i0 < S; i0 += TILE) {  // query tiles at or below the diagonal
      __syncthreads();
      load_query_tile<TILE>(q, out, dout, lse, b, h, i0, S, Hq, D, scale, Qs, dOs, ld, lseS, DlS);
      __syncthreads();
      for (int e = tid; e < TILE * TILE; e += kThreads) {
        const int ii = e / TILE, jj = e % TILE;
        float p = 0.0f, ds = 0.0f;
        if (allowed(sg, S, i0 + ii, j0 + jj)) {
          float s = 0.0f, dp = 0.0f;
          for (int d = 0; d < D; d++) {
            s = fmaf(Qs[ii * ld + d], Ks[jj * ld + d], s);
            dp = fmaf(dOs[ii * ld + d], Vs[jj * ld + d], dp);
          }
          s = capped(s, softcap);
          p = expf(s - lseS[ii]);
          ds = through_cap(p * (dp - DlS[ii]), s, softcap);
        }
        Ps[ii * (TILE + 1) + jj] = p;
        dSs[ii * (TILE + 1) + jj] = ds;
      }
      __syncthreads();
      for (int e = tid; e < TILE * D; e += kThreads) {
        const int jj = e / D, d = e % D;
        float gv = 0.0f, gk = 0.0f;
        for (int ii = 0; ii < TILE; ii++) {
          gv = fmaf(Ps[ii * (TILE + 1) + jj], dOs[ii * ld + d], gv);
          gk = fmaf(dSs[ii * (TILE + 1) + jj], Qs[ii * ld + d], gk);
        }
        dVs[e] += gv;
        dKs[e] += gk;
      }
    }
  }
  __syncthreads();
  for (int e = tid; e < TILE * D; e += kThreads) {
    const int jj = e / D, d = e % D;
    const int64_t j = j0 + jj;
    if (j < S) {
      dk[(b * S + j) * ldk + hk * D + d] = dKs[e];
      dv[(b * S + j) * ldk + hk * D + d] = dVs[e];
    }
  }
}

template <int TILE>
__global__ void __launch_bounds__(kThreads)
attn_bwd_dq_kernel(const float* __restrict__ q, const float* __restrict__ k,
                   const float* __restrict__ v, const float* __restrict__ out,
                   const float* __restrict__ dout, const float* __restrict__ lse,
                   const int32_t* __restrict__ seg, int64_t S, int64_t Hq, int64_t Hkv, int D,
                   float scale, float softcap, float* __restrict__ dq) {
  LORA4J_DYNAMIC_SHARED(float, smem);
  const int ld = D + 1;
  float* Qs = smem;                       // [TILE][D+1] scale * q
  float* dOs = Qs + TILE * ld;            // [TILE][D+1]
  float* Ks = dOs + TILE * ld;            // [TILE][D+1]
  float* Vs = Ks + TILE * ld;             // [TILE][D+1]
  float* dQs = Vs + TILE * ld;            // [TILE][D]
  float* dSs = dQs + TILE * D;            // [TILE][TILE+1]
  float* lseS = dSs + TILE * (TILE + 1);  // [TILE]
  float* DlS = lseS + TILE;               // [TILE]
  const int tid = threadIdx.x;
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = static_cast<int64_t>(blockIdx.x) * TILE;
  const int64_t hk = h / (Hq / Hkv), ldk = Hkv * D, ldq = Hq * D;
  const int32_t* sg = seg ? seg + b * S : nullptr;
  load_query_tile<TILE>(q, out, dout, lse, b, h, i0, S, Hq, D, scale, Qs, dOs, ld, lseS, DlS);
  for (int e = tid; e < TILE * D; e += kThreads) dQs[e] = 0.0f;
  const int64_t jend = (i0 + TILE < S ? i0 + TILE : S);
  for (int64_t j0 = 0; j0 < jend; j0 += TILE) {
    __syncthreads();
    for (int e = tid; e < TILE * D; e += kThreads) {
      const int jj = e / D, d = e % D;
      const int64_t j = j0 + jj;
      const bool in = j < S;
      Ks[jj * ld + d] = in ? k[(b * S + j) * ldk + hk * D + d] : 0.0f;
      Vs[jj * ld + d] = in ? v[(b * S + j) * ldk + hk * D + d] : 0.0f;
    }
    __syncthreads();
    for (int e = tid; e < TILE * TILE; e += kThreads) {
      const int ii = e / TILE, jj = e % TILE;
      float ds = 0.0f;
      if (allowed(sg, S, i0 + ii, j0 + jj)) {
        float s = 0.0f, dp = 0.0f;
        for (int d = 0; d < D; d++) {
          s = fmaf(Qs[ii * ld + d], Ks[jj * ld + d], s);
          dp = fmaf(dOs[ii * ld + d], Vs[jj * ld + d], dp);
        }
        s = capped(s, softcap);
        ds = through_cap(expf(s - lseS[ii]) * (dp - DlS[ii]), s, softcap);
      }
      dSs[ii * (TILE + 1) + jj] = ds;
    }
    __syncthreads();
    for (int e = tid; e < TILE * D; e += kThreads) {
      const int ii = e / D, d = e % D;
      float g = dQs[e];
      for (int jj = 0; jj < TILE; jj++) g = fmaf(dSs[ii * (TILE + 1) + jj], Ks[jj * ld + d], g);
      dQs[e] = g;
    }
  }
  __syncthreads();
  for (int e = tid; e < TILE * D; e += kThreads) {
    const int ii = e / D, d = e % D;
    const int64_t i = i0 + ii;
    if (i < S) dq[(b * S + i) * ldq + h * D + d] = scale * dQs[e];
  }
}

template <int TILE>
size_t fwd_smem(int D) { return sizeof(float) * (3 * TILE * D + TILE * (D + 1) + TILE * (TILE + 1) + 3 * TILE); }
template <int TILE>
size_t dkdv_smem(int D) { return sizeof(float) * (4 * TILE * (D + 1) + 2 * TILE * D + 2 * TILE * (TILE + 1) + 2 * TILE); }
template <int TILE>
size_t dq_smem(int D) { return sizeof(float) * (4 * TILE * (D + 1) + TILE * D + TILE * (TILE + 1) + 2 * TILE); }

template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    LORA4J_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(bytes)));
}

// The device's opt-in maximum of shared memory per block (cudaFuncSetAttribute's ceiling).
size_t smem_optin() {
  int dev = 0, v = 0;
  LORA4J_CUDA_CHECK(cudaGetDevice(&dev));
  LORA4J_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return static_cast<size_t>(v);
}

void check_shapes(int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D, float softcap) {
  LORA4J_CHECK(Hkv > 0 && Hq % Hkv == 0, "attention: Hq must be a multiple of Hkv");
  LORA4J_CHECK(softcap >= 0.0f, "attention: softcap must be >= 0");
  LORA4J_CHECK(D > 0 && D <= kMaxD, "cuda attention: head_dim must be in [1, 256], got " + std::to_string(D));
  LORA4J_CHECK(Hq <= 65535 && B <= 65535, "cuda attention: grid limits (Hq, B <= 65535)");
}

template <int TILE>
void fwd_launch(const float* q, const float* k, const float* v, const int32_t* seg, int64_t B,
                int64_t S, int64_t Hq, int64_t Hkv, int D, float softcap, float* out, float* lse,
                cudaStream_t st) {
  const size_t smem = fwd_smem<TILE>(D);
  allow_smem(attn_fwd_kernel<TILE>, smem);
  const dim3 grid(static_cast<unsigned>((S + TILE - 1) / TILE), static_cast<unsigned>(Hq),
                  static_cast<unsigned>(B));
  LORA4J_LAUNCH(grid, kThreads, smem, st, attn_fwd_kernel<TILE>)(
      q, k, v, seg, S, Hq, Hkv, D, 1.0f / sqrtf(static_cast<float>(D)), softcap, out, lse);
  LORA4J_CUDA_LAUNCH_CHECK("attention_fwd");
}

template <int TILE>
void bwd_launch(const float* q, const float* k, const float* v, const float* out,
                const float* dout, const float* lse, const int32_t* seg, int64_t B, int64_t S,
                int64_t Hq, int64_t Hkv, int D, float softcap, float* dq, float* dk, float* dv,
                cudaStream_t st) {
  const float scale = 1.0f / sqrtf(static_cast<float>(D));
  const unsigned tiles = static_cast<unsigned>((S + TILE - 1) / TILE);
  const size_t s1 = dkdv_smem<TILE>(D), s2 = dq_smem<TILE>(D);
  allow_smem(attn_bwd_dkdv_kernel<TILE>, s1);
  allow_smem(attn_bwd_dq_kernel<TILE>, s2);
  LORA4J_LAUNCH(dim3(tiles, static_cast<unsigned>(Hkv), static_cast<unsigned>(B)), kThreads, s1, st,
                attn_bwd_dkdv_kernel<TILE>)(
      q, k, v, out, dout, lse, seg, S, Hq, Hkv, D, scale, softcap, dk, dv);
  LORA4J_CUDA_LAUNCH_CHECK("attention_bwd dkdv");
  LORA4J_LAUNCH(dim3(tiles, static_cast<unsigned>(Hq), static_cast<unsigned>(B)), kThreads, s2, st,
                attn_bwd_dq_kernel<TILE>)(q, k, v, out, dout, lse, seg, S, Hq, Hkv, D, scale, softcap, dq);
  LORA4J_CUDA_LAUNCH_CHECK("attention_bwd dq");
}

}  // namespace

extern "C" {

void lora4j_cuda_attention_fwd(const float* q, const float* k, const float* v,
                               const int32_t* seg, int64_t B, int64_t S, int64_t Hq,
                               int64_t Hkv, int64_t D, float softcap, float* out, float* lse,
                               void* stream) {
  check_shapes(B, S, Hq, Hkv, D, softcap);
  if (B == 0 || S == 0) return;
  if (D <= 128)
    fwd_launch<32>(q, k, v, seg, B, S, Hq, Hkv, static_cast<int>(D), softcap, out, lse, as_stream(stream));
  else
    fwd_launch<16>(q, k, v, seg, B, S, Hq, Hkv, static_cast<int>(D), softcap, out, lse, as_stream(stream));
}

void lora4j_cuda_attention_bwd(const float* q, const float* k, const float* v, const float* out,
                               const float* dout, const float* lse, const int32_t* seg,
                               int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                               float softcap, float* dq, float* dk, float* dv, void* stream) {
  check_shapes(B, S, Hq, Hkv, D, softcap);
  if (B == 0 || S == 0) return;
  // dkdv with 32-row tiles needs 105 KiB at D = 128: more than the 99 KiB opt-in of sm_86/sm_89
  // (RTX 30/40, L4, L40S). Take 16-row tiles where the device can't hold the 32-row ones.
  if (D <= 128 && dkdv_smem<32>(static_cast<int>(D)) <= smem_optin())
    bwd_launch<32>(q, k, v, out, dout, lse, seg, B, S, Hq, Hkv, static_cast<int>(D), softcap, dq, dk, dv,
                   as_stream(stream));
  else
    bwd_launch<16>(q, k, v, out, dout, lse, seg, B, S, Hq, Hkv, static_cast<int>(D), softcap, dq, dk, dv,
                   as_stream(stream));
}

}  // extern "C"
