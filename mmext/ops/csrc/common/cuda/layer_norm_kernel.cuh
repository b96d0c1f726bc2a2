// CUDA kernels of the fused LayerNorm (s = x + pre_bias + residual; y = LN(s) * w + b).
//
// One block per row.  Loads and stores go through 16-byte vectors when the row length and
// the pointers allow it (4 floats, 8 halves/bfloat16s per access), else element by element.
// Statistics accumulate in float (double for double inputs) with warp shuffles and one shared
// memory step per block reduction; the mean is reduced first and the variance from
// (s - mean)^2 in a second pass over the row, which L1/L2 serve, so |mean| >> std stays exact.
// Half types are converted with c10's conversions (torch's flags disable the __half operators).
#pragma once
#include <c10/cuda/CUDAException.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace mmext {
namespace layer_norm {

constexpr int kWarp = 32;

template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

template <typename A>
__device__ __forceinline__ A warp_sum(A x) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// Sum over the block; every thread gets the result.  `shared` holds one slot per warp.
template <typename A>
__device__ __forceinline__ A block_sum(A x, A* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int num_warps = (blockDim.x + kWarp - 1) / kWarp;
  x = warp_sum(x);
  __syncthreads();  // `shared` may still be read from the previous reduction
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  A total = lane < num_warps ? shared[lane] : A(0);
  return warp_sum(total);
}

// Calls f(i, k) for element indices handled by this thread, `VEC` consecutive at a time when
// `vectorised`, else one at a time.
template <int VEC, typename F>
__device__ __forceinline__ void for_row(int64_t n, bool vectorised, F f) {
  if (vectorised) {
    for (int64_t i = threadIdx.x * VEC; i < n; i += int64_t(blockDim.x) * VEC) f(i, VEC);
  } else {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) f(i, 1);
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void load(const T* p, int64_t i, int k, typename Acc<T>::type* out) {
  using A = typename Acc<T>::type;
  if (k == VEC) {
    const Vec<T, VEC> v = *reinterpret_cast<const Vec<T, VEC>*>(p + i);
#pragma unroll
    for (int j = 0; j < VEC; ++j) out[j] = static_cast<A>(v.v[j]);
  } else {
    out[0] = static_cast<A>(p[i]);
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void store(T* p, int64_t i, int k, const typename Acc<T>::type* in) {
  if (k == VEC) {
    Vec<T, VEC> v;
#pragma unroll
    for (int j = 0; j < VEC; ++j) v.v[j] = static_cast<T>(in[j]);
    *reinterpret_cast<Vec<T, VEC>*>(p + i) = v;
  } else {
    p[i] = static_cast<T>(in[0]);
  }
}

template <typename T, int VEC>
__global__ void forward_kernel(const T* x, const T* __restrict__ residual,
                               const T* __restrict__ pre_bias, const T* __restrict__ weight,
                               const T* __restrict__ bias, T* __restrict__ y,
                               T* prenorm,  // not restrict: re-read through `in` below
                               typename Acc<T>::type* __restrict__ mean_out,
                               typename Acc<T>::type* __restrict__ rstd_out, int64_t n,
                               double eps, bool vectorised) {
  using A = typename Acc<T>::type;
  __shared__ A shared[kWarp];
  const int64_t row = blockIdx.x;
  const T* in = x + row * n;
  A buf[VEC], tmp[VEC];
  A sum = 0;
  if (prenorm != nullptr) {  // s = (x + pre_bias) + residual, rounded to T as unfused code does
    T* s = prenorm + row * n;
    const T* r = residual != nullptr ? residual + row * n : nullptr;
    for_row<VEC>(n, vectorised, [&](int64_t i, int k) {
      load<T, VEC>(in, i, k, buf);
      if (pre_bias != nullptr) {
        load<T, VEC>(pre_bias, i, k, tmp);
        for (int j = 0; j < k; ++j) buf[j] = static_cast<A>(static_cast<T>(buf[j] + tmp[j]));
      }
      if (r != nullptr) {
        load<T, VEC>(r, i, k, tmp);
        for (int j = 0; j < k; ++j) buf[j] += tmp[j];
      }
      for (int j = 0; j < k; ++j) buf[j] = static_cast<A>(static_cast<T>(buf[j]));
      store<T, VEC>(s, i, k, buf);
      for (int j = 0; j < k; ++j) sum += buf[j];
    });
    in = s;
    __syncthreads();  // make this block's prenorm writes visible to its own re-reads
  } else {
    for_row<VEC>(n, vectorised, [&](int64_t i, int k) {
      load<T, VEC>(in, i, k, buf);
      for (int j = 0; j < k; ++j) sum += buf[j];
    });
  }
  const A mean = block_sum(sum, shared) / static_cast<A>(n);
  A sq = 0;
  for_row<VEC>(n, vectorised, [&](int64_t i, int k) {
    load<T, VEC>(in, i, k, buf);
    for (int j = 0; j < k; ++j) sq += (buf[j] - mean) * (buf[j] - mean);
  });
  const A var = block_sum(sq, shared) / static_cast<A>(n);
  const A rstd = static_cast<A>(1) / sqrt(var + static_cast<A>(eps));
  if (threadIdx.x == 0) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
  T* out = y + row * n;
  for_row<VEC>(n, vectorised, [&](int64_t i, int k) {
    load<T, VEC>(in, i, k, buf);
    for (int j = 0; j < k; ++j) buf[j] = (buf[j] - mean) * rstd;
    if (weight != nullptr) {
      load<T, VEC>(weight, i, k, tmp);
      for (int j = 0; j < k; ++j) buf[j] *= tmp[j];
    }
    if (bias != nullptr) {
      load<T, VEC>(bias, i, k, tmp);
      for (int j = 0; j < k; ++j) buf[j] += tmp[j];
    }
    store<T, VEC>(out, i, k, buf);
  });
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) (+ dprenorm), g = dy * weight.
template <typename T, int VEC>
__global__ void backward_input_kernel(const T* __restrict__ dy, const T* __restrict__ s,
                                      const typename Acc<T>::type* __restrict__ mean,
                                      const typename Acc<T>::type* __restrict__ rstd,
                                      const T* __restrict__ weight,
                                      const T* __restrict__ dprenorm, T* __restrict__ dx,
                                      int64_t n, bool vectorised) {
  using A = typename Acc<T>::type;
  __shared__ A shared[kWarp];
  const int64_t row = blockIdx.x;
  const A mu = mean[row], r = rstd[row];
  const T* g_row = dy + row * n;
  const T* s_row = s + row * n;
  A g[VEC], xs[VEC], w[VEC];
  A sum_g = 0, sum_gx = 0;
  for_row<VEC>(n, vectorised, [&](int64_t i, int k) {
    load<T, VEC>(g_row, i, k, g);
    load<T, VEC>(s_row, i, k, xs);
    if (weight != nullptr) load<T, VEC>(weight, i, k, w);
    for (int j = 0; j < k; ++j) {
      const A gj = weight != nullptr ? g[j] * w[j] : g[j];
      sum_g += gj;
      sum_gx += gj * (xs[j] - mu) * r;
    }
  });
  const A mean_g = block_sum(sum_g, shared) / static_cast<A>(n);
  const A mean_gx = block_sum(sum_gx, shared) / static_cast<A>(n);
  T* out = dx + row * n;
  const T* extra = dprenorm != nullptr ? dprenorm + row * n : nullptr;
  for_row<VEC>(n, vectorised, [&](int64_t i, int k) {
    load<T, VEC>(g_row, i, k, g);
    load<T, VEC>(s_row, i, k, xs);
    if (weight != nullptr) load<T, VEC>(weight, i, k, w);
    A e[VEC];
    if (extra != nullptr) load<T, VEC>(extra, i, k, e);
    for (int j = 0; j < k; ++j) {
      const A gj = weight != nullptr ? g[j] * w[j] : g[j];
      g[j] = (gj - mean_g - (xs[j] - mu) * r * mean_gx) * r + (extra != nullptr ? e[j] : A(0));
    }
    store<T, VEC>(out, i, k, g);
  });
}

// dweight[c] = sum_m dy[m, c] * xhat[m, c], dbias[c] = sum_m dy[m, c]: blockDim (32, Y), each
// block owns 32 columns; threads stride over rows, then reduce across threadIdx.y.
template <typename T>
__global__ void backward_params_kernel(const T* __restrict__ dy, const T* __restrict__ s,
                                       const typename Acc<T>::type* __restrict__ mean,
                                       const typename Acc<T>::type* __restrict__ rstd,
                                       typename Acc<T>::type* __restrict__ dweight,
                                       typename Acc<T>::type* __restrict__ dbias, int64_t m,
                                       int64_t n) {
  using A = typename Acc<T>::type;
  extern __shared__ unsigned char raw[];
  A* sw = reinterpret_cast<A*>(raw);
  A* sb = sw + blockDim.x * blockDim.y;
  const int64_t col = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  A acc_w = 0, acc_b = 0;
  if (col < n) {
    for (int64_t row = threadIdx.y; row < m; row += blockDim.y) {
      const A g = static_cast<A>(dy[row * n + col]);
      acc_w += g * (static_cast<A>(s[row * n + col]) - mean[row]) * rstd[row];
      acc_b += g;
    }
  }
  const int t = threadIdx.y * blockDim.x + threadIdx.x;
  sw[t] = acc_w;
  sb[t] = acc_b;
  __syncthreads();
  for (int stride = blockDim.y / 2; stride > 0; stride /= 2) {
    if (threadIdx.y < stride) {
      sw[t] += sw[t + stride * blockDim.x];
      sb[t] += sb[t + stride * blockDim.x];
    }
    __syncthreads();
  }
  if (threadIdx.y == 0 && col < n) {
    dweight[col] = sw[threadIdx.x];
    dbias[col] = sb[threadIdx.x];
  }
}

}  // namespace layer_norm
}  // namespace mmext
