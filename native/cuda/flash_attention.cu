// Causal grouped-query attention on bf16 tensor cores, flash-attention style (FlashAttention-2:
// no [S, S] matrix in global memory, online softmax in the forward, P recomputed from the saved
// log-sum-exp in the backward). Same op, layout and math as native/cuda/attention.cu and its CPU
// twin native/cpu/attention.cpp (ops.h), plus Gemma 2's score soft-capping:
//
//   allowed(i, j) = j <= i && (seg == null || seg[b*S+j] == seg[b*S+i]);  scale = 1/sqrt(D)
//   t_ij = scale q_i·k_j;   s_ij = softcap > 0 ? softcap tanh(t_ij / softcap) : t_ij
//   forward:   P_ij = exp(s_ij - lse_i) over allowed j;  out_i = Σ_j P_ij v_j;  lse_i = log Σ_j exp(s_ij)
//   backward:  Dl_i = dout_i·out_i;  dP_ij = dout_i·v_j;  dS_ij = P_ij (dP_ij - Dl_i)
//              dT_ij = dS_ij (1 - tanh²(t_ij / softcap))   (= dS_ij without softcap)
//              dv_j = Σ_i P_ij dout_i;   dk_j = scale Σ_i dT_ij q_i;   dq_i = scale Σ_j dT_ij k_j
//
// Precision (PEFT/Unsloth's bf16 mixed precision): q, k, v, dout and the probabilities P / dT
// are rounded to bf16 as they become mma operands; every product accumulates in fp32; scores,
// softmax, log-sum-exp, Dl and the soft-cap derivative are fp32. Activations in global memory
// stay fp32 (the op's signature), lse is [B, Hq, S] fp32 as in the SIMT kernels.
//
// Tiling: 64 query rows x 64 keys per step, 4 warps of 16 rows (mma_gemm.cuh fragments):
//   fwd   one CTA per (query tile, query head, batch): Q fragments in registers, K and V tiles
//         in shared memory; S = Q·Kᵀ (B = K as [key][d]), P stays in registers as the A operand
//         of O += P·V (B = V as [key][d], read as [k][n]).
//   dkdv  one CTA per (key tile, kv head, batch), warps own 16 keys, looping over the group's
//         query heads and the query tiles at or below the diagonal: Sᵀ = K·Qᵀ, dPᵀ = V·doutᵀ,
//         dv += Pᵀ·dout, dk += dTᵀ·q (both B operands read [query][d] as [k][n]).
//   dq    one CTA per (query tile, query head, batch), looping over key tiles: S, dP as in fwd,
//         dq += dT·K.
// Two backward kernels instead of atomics: deterministic, no workspace. Shared memory per CTA:
// fwd 3, dkdv/dq 4 bf16 tiles of 64 x (D + 8) (+ 512 B): 69 KiB at D = 128, under the 99 KiB
// opt-in of sm_86/sm_89. Any head_dim that is a multiple of 16 in [16, 128] works; the op takes
// this path where S and D are both >= 64 (flash_attention.h).
#include "cuda/flash_attention.h"
#include "cuda/mma_gemm.cuh"

namespace {

using namespace lora4j_mma;

constexpr int kRows = 64;     // query rows per tile (4 warps x 16)
constexpr int kKeys = 64;     // keys per tile
constexpr int kThreads = 128;
static_assert(kRows == 64 && kKeys == 64, "two_scores/accumulate are written for 64-row tiles");

__device__ __forceinline__ bool allowed(const int32_t* sg, int64_t S, int64_t i, int64_t j) {
  return i < S && j <= i && (sg == nullptr || sg[i] == sg[j]);
}

// Scaled, optionally soft-capped score; th = tanh(t / softcap) for the backward (0 without cap).
__device__ __forceinline__ float score(float dot, float scale, float softcap, float& th) {
  const float t = dot * scale;
  if (softcap > 0.0f) {
    th = tanhf(t / softcap);
    return softcap * th;
  }
  th = 0.0f;
  return t;
}

// rows r0..r0+n of the head slice x[(b*S + r) * ld + col .. + D] into s[r][d] as bf16 (0 past S).
template <int D>
__device__ __forceinline__ void stage_rows(uint16_t* s, const float* __restrict__ x, int64_t b, int64_t S,
                                           int64_t ld, int64_t col, int64_t r0, int n) {
  constexpr int LD = D + 8;
  for (int e = threadIdx.x; e < n * D; e += kThreads) {
    const int rr = e / D, d = e % D;
    const int64_t r = r0 + rr;
    s[rr * LD + d] = r < S ? f2bf(x[(b * S + r) * ld + col + d]) : uint16_t(0);
  }
}

// lse and Dl = dout·out (fp32, from global memory) of the query tile rows i0.. of head h.
template <int D>
__device__ __forceinline__ void stage_row_stats(float* lseS, float* DlS, const float* __restrict__ out,
                                                const float* __restrict__ dout, const float* __restrict__ lse,
                                                int64_t b, int64_t h, int64_t i0, int64_t S, int64_t Hq) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t ld = Hq * D;
  for (int ii = warp; ii < kRows; ii += kThreads / 32) {
    const int64_t i = i0 + ii;
    float acc = 0.0f;
    if (i < S) {
      const float* o = out + (b * S + i) * ld + h * D;
      const float* g = dout + (b * S + i) * ld + h * D;
      // dout rounded as in the dP product, so that Σ_j P_ij (dP_ij - Dl_i) stays ~0 (softmax's
      // gradient sums to zero): an fp32 Dl against bf16 dP leaves a 2^-9 |dout||v| bias in dS.
      for (int d = lane; d < D; d += 32) acc = fmaf(o[d], bf2f(f2bf(g[d])), acc);
    }
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) {
      DlS[ii] = acc;
      lseS[ii] = i < S ? lse[(b * Hq + h) * S + i] : 0.0f;
    }
  }
}

// x += Ax·Bxᵀ and y += Ay·Byᵀ for this warp's 16 rows of Ax/Ay ([row][d] tiles) against the
// 64 rows of Bx/By ([row][d] tiles, read as the [n][k] "col" operand): S and dP (or Sᵀ and dPᵀ).
template <int D>
__device__ __forceinline__ void two_scores(float (&x)[8][4], float (&y)[8][4], const uint16_t* Ax,
                                          const uint16_t* Ay, const uint16_t* Bx, const uint16_t* By) {
  constexpr int LD = D + 8;
  const int m0 = (threadIdx.x >> 5) * 16;
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    uint32_t ax[4], ay[4];
    frag_a(ax, Ax, LD, m0, kk * 16);
    frag_a(ay, Ay, LD, m0, kk * 16);
#pragma unroll
    for (int nb = 0; nb < 8; nb++) {
      uint32_t bx[2], by[2];
      frag_b_nk(bx, Bx, LD, kk * 16, nb * 8);
      frag_b_nk(by, By, LD, kk * 16, nb * 8);
      mma(x[nb], ax, bx);
      mma(y[nb], ay, by);
    }
  }
}

// acc (16 x D) += P (16 x 64, this warp's accumulators, rounded to bf16 as the A operand) · Bs,
// Bs a [64][d] tile read as [k][n]: P·V, Pᵀ·dout, dTᵀ·q, dT·K.
template <int D>
__device__ __forceinline__ void accumulate(float (&acc)[D / 8][4], const float (&p)[8][4], const uint16_t* Bs) {
#pragma unroll
  for (int kk = 0; kk < 4; kk++) {
    uint32_t pa[4];
    c_to_a(pa, p[2 * kk], p[2 * kk + 1]);
#pragma unroll
    for (int nb = 0; nb < D / 8; nb++) {
      uint32_t b[2];
      frag_b_kn(b, Bs, D + 8, kk * 16, nb * 8);
      mma(acc[nb], pa, b);
    }
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads)
flash_fwd_kernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                 const int32_t* __restrict__ seg, int64_t S, int64_t Hq, int64_t Hkv, float scale,
                 float softcap, float* __restrict__ out, float* __restrict__ lse) {
  constexpr int LD = D + 8;
  LORA4J_DYNAMIC_SHARED(uint16_t, smem);
  uint16_t* Qs = smem;               // [kRows][LD]
  uint16_t* Ks = Qs + kRows * LD;    // [kKeys][LD]
  uint16_t* Vs = Ks + kKeys * LD;    // [kKeys][LD]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, qd = lane & 3;
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = int64_t(blockIdx.x) * kRows;
  const int64_t hk = h / (Hq / Hkv), ldq = Hq * D, ldk = Hkv * D;
  const int32_t* sg = seg ? seg + b * S : nullptr;
  stage_rows<D>(Qs, q, b, S, ldq, h * D, i0, kRows);
  __syncthreads();
  uint32_t qa[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) frag_a(qa[kk], Qs, LD, warp * 16, kk * 16);
  const int64_t row[2] = {i0 + warp * 16 + g, i0 + warp * 16 + g + 8};
  float o[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int64_t jend = i0 + kRows < S ? i0 + kRows : S;
  for (int64_t j0 = 0; j0 < jend; j0 += kKeys) {
    __syncthreads();  // the previous step's K/V reads are done
    stage_rows<D>(Ks, k, b, S, ldk, hk * D, j0, kKeys);
    stage_rows<D>(Vs, v, b, S, ldk, hk * D, j0, kKeys);
    __syncthreads();
    float s[kKeys / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
      for (int nb = 0; nb < kKeys / 8; nb++) {
        uint32_t bk[2];
        frag_b_nk(bk, Ks, LD, kk * 16, nb * 8);
        mma(s[nb], qa[kk], bk);
      }
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nb = 0; nb < kKeys / 8; nb++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int hr = e >> 1;
        const int64_t j = j0 + nb * 8 + 2 * qd + (e & 1);
        float th;
        const float x = score(s[nb][e], scale, softcap, th);
        s[nb][e] = allowed(sg, S, row[hr], j) ? x : -INFINITY;
        mx[hr] = fmaxf(mx[hr], s[nb][e]);
      }
    float alpha[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
      // the 4 lanes of a row group (same g) hold its 64 columns
      mx[hr] = fmaxf(mx[hr], __shfl_xor_sync(0xffffffffu, mx[hr], 1));
      mx[hr] = fmaxf(mx[hr], __shfl_xor_sync(0xffffffffu, mx[hr], 2));
      const float mnew = fmaxf(m[hr], mx[hr]);
      alpha[hr] = m[hr] == -INFINITY ? (mnew == -INFINITY ? 1.0f : 0.0f) : expf(m[hr] - mnew);
      m[hr] = mnew;
    }
#pragma unroll
    for (int nb = 0; nb < kKeys / 8; nb++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int hr = e >> 1;
        const float p = m[hr] == -INFINITY ? 0.0f : expf(s[nb][e] - m[hr]);  // masked: exp(-inf) = 0
        s[nb][e] = p;
        sum[hr] += p;
      }
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
      sum[hr] += __shfl_xor_sync(0xffffffffu, sum[hr], 1);
      sum[hr] += __shfl_xor_sync(0xffffffffu, sum[hr], 2);
      l[hr] = l[hr] * alpha[hr] + sum[hr];
    }
#pragma unroll
    for (int nb = 0; nb < D / 8; nb++)
#pragma unroll
      for (int e = 0; e < 4; e++) o[nb][e] *= alpha[e >> 1];
    accumulate<D>(o, s, Vs);
  }
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    if (row[hr] >= S) continue;
    const float inv = 1.0f / l[hr];
    float* orow = out + (b * S + row[hr]) * ldq + h * D;
#pragma unroll
    for (int nb = 0; nb < D / 8; nb++) {
      orow[nb * 8 + 2 * qd] = o[nb][2 * hr] * inv;
      orow[nb * 8 + 2 * qd + 1] = o[nb][2 * hr + 1] * inv;
    }
    if (qd == 0) lse[(b * Hq + h) * S + row[hr]] = m[hr] + logf(l[hr]);
  }
}

// P and dT of one score element from the raw dot products q·k and dout·v.
__device__ __forceinline__ void prob_and_grad(float& s, float& dp, bool ok, float scale, float softcap,
                                              float lse_i, float dl_i) {
  if (!ok) {
    s = dp = 0.0f;
    return;
  }
  float th;
  const float p = expf(score(s, scale, softcap, th) - lse_i);
  float ds = p * (dp - dl_i);
  if (softcap > 0.0f) ds *= 1.0f - th * th;
  s = p;
  dp = ds;
}

template <int D>
__global__ void __launch_bounds__(kThreads)
flash_bwd_dkdv_kernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                      const float* __restrict__ out, const float* __restrict__ dout,
                      const float* __restrict__ lse, const int32_t* __restrict__ seg, int64_t S, int64_t Hq,
                      int64_t Hkv, float scale, float softcap, float* __restrict__ dk,
                      float* __restrict__ dv) {
  constexpr int LD = D + 8;
  LORA4J_DYNAMIC_SHARED(uint16_t, smem);
  uint16_t* Ks = smem;                // [kKeys][LD]
  uint16_t* Vs = Ks + kKeys * LD;     // [kKeys][LD]
  uint16_t* Qs = Vs + kKeys * LD;     // [kRows][LD]
  uint16_t* dOs = Qs + kRows * LD;    // [kRows][LD]
  float* lseS = reinterpret_cast<float*>(dOs + kRows * LD);  // [kRows]
  float* DlS = lseS + kRows;                                  // [kRows]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, qd = lane & 3;
  const int64_t b = blockIdx.z, hk = blockIdx.y, j0 = int64_t(blockIdx.x) * kKeys;
  const int64_t group = Hq / Hkv, ldq = Hq * D, ldk = Hkv * D;
  const int32_t* sg = seg ? seg + b * S : nullptr;
  stage_rows<D>(Ks, k, b, S, ldk, hk * D, j0, kKeys);
  stage_rows<D>(Vs, v, b, S, ldk, hk * D, j0, kKeys);
  const int64_t key[2] = {j0 + warp * 16 + g, j0 + warp * 16 + g + 8};
  float dka[D / 8][4] = {}, dva[D / 8][4] = {};
  for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
    for (int64_t i0 = j0 / kRows * kRows; i0 < S; i0 += kRows) {  // query tiles at or below the diagonal
      __syncthreads();  // the previous tile's Q/dO reads are done
      stage_rows<D>(Qs, q, b, S, ldq, h * D, i0, kRows);
      stage_rows<D>(dOs, dout, b, S, ldq, h * D, i0, kRows);
      stage_row_stats<D>(lseS, DlS, out, dout, lse, b, h, i0, S, Hq);
      __syncthreads();
      float st[kRows / 8][4] = {}, dpt[kRows / 8][4] = {};  // Sᵀ, dPᵀ: this warp's 16 keys x 64 queries
      two_scores<D>(st, dpt, Ks, Vs, Qs, dOs);
#pragma unroll
      for (int nb = 0; nb < kRows / 8; nb++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int ii = nb * 8 + 2 * qd + (e & 1);
          prob_and_grad(st[nb][e], dpt[nb][e], allowed(sg, S, i0 + ii, key[e >> 1]), scale, softcap, lseS[ii],
                        DlS[ii]);
        }
      accumulate<D>(dva, st, dOs);
      accumulate<D>(dka, dpt, Qs);
    }
  }
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    if (key[hr] >= S) continue;
    float* dkr = dk + (b * S + key[hr]) * ldk + hk * D;
    float* dvr = dv + (b * S + key[hr]) * ldk + hk * D;
#pragma unroll
    for (int nb = 0; nb < D / 8; nb++)
#pragma unroll
      for (int c = 0; c < 2; c++) {
        dkr[nb * 8 + 2 * qd + c] = scale * dka[nb][2 * hr + c];
        dvr[nb * 8 + 2 * qd + c] = dva[nb][2 * hr + c];
      }
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads)
flash_bwd_dq_kernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                    const float* __restrict__ out, const float* __restrict__ dout, const float* __restrict__ lse,
                    const int32_t* __restrict__ seg, int64_t S, int64_t Hq, int64_t Hkv, float scale,
                    float softcap, float* __restrict__ dq) {
  constexpr int LD = D + 8;
  LORA4J_DYNAMIC_SHARED(uint16_t, smem);
  uint16_t* Qs = smem;                // [kRows][LD]
  uint16_t* dOs = Qs + kRows * LD;    // [kRows][LD]
  uint16_t* Ks = dOs + kRows * LD;    // [kKeys][LD]
  uint16_t* Vs = Ks + kKeys * LD;     // [kKeys][LD]
  float* lseS = reinterpret_cast<float*>(Vs + kKeys * LD);  // [kRows]
  float* DlS = lseS + kRows;                                 // [kRows]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, qd = lane & 3;
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = int64_t(blockIdx.x) * kRows;
  const int64_t hk = h / (Hq / Hkv), ldq = Hq * D, ldk = Hkv * D;
  const int32_t* sg = seg ? seg + b * S : nullptr;
  stage_rows<D>(Qs, q, b, S, ldq, h * D, i0, kRows);
  stage_rows<D>(dOs, dout, b, S, ldq, h * D, i0, kRows);
  stage_row_stats<D>(lseS, DlS, out, dout, lse, b, h, i0, S, Hq);
  const int r[2] = {warp * 16 + g, warp * 16 + g + 8};  // this lane's rows within the tile
  float dqa[D / 8][4] = {};
  const int64_t jend = i0 + kRows < S ? i0 + kRows : S;
  for (int64_t j0 = 0; j0 < jend; j0 += kKeys) {
    __syncthreads();  // the previous step's K/V reads are done (and the Q/dO/stats stores)
    stage_rows<D>(Ks, k, b, S, ldk, hk * D, j0, kKeys);
    stage_rows<D>(Vs, v, b, S, ldk, hk * D, j0, kKeys);
    __syncthreads();
    float s[kKeys / 8][4] = {}, dp[kKeys / 8][4] = {};
    two_scores<D>(s, dp, Qs, dOs, Ks, Vs);
#pragma unroll
    for (int nb = 0; nb < kKeys / 8; nb++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int ii = r[e >> 1];
        const int64_t j = j0 + nb * 8 + 2 * qd + (e & 1);
        prob_and_grad(s[nb][e], dp[nb][e], allowed(sg, S, i0 + ii, j), scale, softcap, lseS[ii], DlS[ii]);
      }
    accumulate<D>(dqa, dp, Ks);
  }
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    const int64_t i = i0 + r[hr];
    if (i >= S) continue;
    float* dqr = dq + (b * S + i) * ldq + h * D;
#pragma unroll
    for (int nb = 0; nb < D / 8; nb++)
#pragma unroll
      for (int c = 0; c < 2; c++) dqr[nb * 8 + 2 * qd + c] = scale * dqa[nb][2 * hr + c];
  }
}

size_t fwd_smem(int D) { return sizeof(uint16_t) * size_t(kRows + 2 * kKeys) * (D + 8); }
size_t bwd_smem(int D) { return sizeof(uint16_t) * size_t(2 * kRows + 2 * kKeys) * (D + 8) + 2 * kRows * sizeof(float); }

template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    LORA4J_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

void check_shapes(int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D, float softcap) {
  LORA4J_CHECK(Hkv > 0 && Hq % Hkv == 0, "flash attention: Hq must be a multiple of Hkv");
  LORA4J_CHECK(D % 16 == 0 && D >= 16 && D <= 128,
               "flash attention: head_dim must be a multiple of 16 in [16, 128], got " + std::to_string(D));
  LORA4J_CHECK(Hq <= 65535 && B <= 65535, "flash attention: grid limits (Hq, B <= 65535)");
  LORA4J_CHECK(softcap >= 0.0f, "flash attention: softcap must be >= 0 (0 = off)");
  (void)S;
}

template <int D>
void fwd_launch(const float* q, const float* k, const float* v, const int32_t* seg, int64_t B, int64_t S,
                int64_t Hq, int64_t Hkv, float softcap, float* out, float* lse, cudaStream_t st) {
  const size_t smem = fwd_smem(D);
  allow_smem(flash_fwd_kernel<D>, smem);
  const dim3 grid(unsigned((S + kRows - 1) / kRows), unsigned(Hq), unsigned(B));
  LORA4J_LAUNCH(grid, kThreads, smem, st, flash_fwd_kernel<D>)(
      q, k, v, seg, S, Hq, Hkv, 1.0f / sqrtf(float(D)), softcap, out, lse);
  LORA4J_CUDA_LAUNCH_CHECK("flash_attention_fwd");
}

template <int D>
void bwd_launch(const float* q, const float* k, const float* v, const float* out, const float* dout,
                const float* lse, const int32_t* seg, int64_t B, int64_t S, int64_t Hq, int64_t Hkv, float softcap,
                float* dq, float* dk, float* dv, cudaStream_t st) {
  const float scale = 1.0f / sqrtf(float(D));
  const size_t smem = bwd_smem(D);
  allow_smem(flash_bwd_dkdv_kernel<D>, smem);
  allow_smem(flash_bwd_dq_kernel<D>, smem);
  LORA4J_LAUNCH(dim3(unsigned((S + kKeys - 1) / kKeys), unsigned(Hkv), unsigned(B)), kThreads, smem, st,
                flash_bwd_dkdv_kernel<D>)(q, k, v, out, dout, lse, seg, S, Hq, Hkv, scale, softcap, dk, dv);
  LORA4J_CUDA_LAUNCH_CHECK("flash_attention_bwd dkdv");
  LORA4J_LAUNCH(dim3(unsigned((S + kRows - 1) / kRows), unsigned(Hq), unsigned(B)), kThreads, smem, st,
                flash_bwd_dq_kernel<D>)(q, k, v, out, dout, lse, seg, S, Hq, Hkv, scale, softcap, dq);
  LORA4J_CUDA_LAUNCH_CHECK("flash_attention_bwd dq");
}

// The head dims with an instantiation: multiples of 16 in [16, 128] (check_shapes).
#define LORA4J_FLASH_HEAD_DIMS(X) X(16) X(32) X(48) X(64) X(80) X(96) X(112) X(128)

}  // namespace

extern "C" {

int32_t lora4j_cuda_flash_attention_used(int64_t S, int64_t D) {
  return S >= 64 && D >= 64 && D <= 128 && D % 16 == 0;
}

void lora4j_cuda_flash_attention_fwd(const float* q, const float* k, const float* v, const int32_t* seg,
                                     int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D, float softcap,
                                     float* out, float* lse, void* stream) {
  check_shapes(B, S, Hq, Hkv, D, softcap);
  if (B == 0 || S == 0) return;
  switch (D) {
#define CASE(HD) \
  case HD: fwd_launch<HD>(q, k, v, seg, B, S, Hq, Hkv, softcap, out, lse, as_stream(stream)); break;
    LORA4J_FLASH_HEAD_DIMS(CASE)
#undef CASE
  }
}

void lora4j_cuda_flash_attention_bwd(const float* q, const float* k, const float* v, const float* out,
                                     const float* dout, const float* lse, const int32_t* seg, int64_t B,
                                     int64_t S, int64_t Hq, int64_t Hkv, int64_t D, float softcap, float* dq,
                                     float* dk, float* dv, void* stream) {
  check_shapes(B, S, Hq, Hkv, D, softcap);
  if (B == 0 || S == 0) return;
  switch (D) {
#define CASE(HD) \
  case HD: bwd_launch<HD>(q, k, v, out, dout, lse, seg, B, S, Hq, Hkv, softcap, dq, dk, dv, as_stream(stream)); break;
    LORA4J_FLASH_HEAD_DIMS(CASE)
#undef CASE
  }
}

}  // extern "C"
