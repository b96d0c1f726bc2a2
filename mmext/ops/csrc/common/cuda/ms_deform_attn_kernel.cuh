// CUDA kernels of multi-scale deformable attention (maths in pytorch/ms_deform_attn.cpp).
//
// One warp per (image, query, head): lanes own channels (lane, lane + 32, ...), so every corner
// read and every grad_value update is coalesced over the head's contiguous channels, and the
// sample's geometry (computed by every lane alike) costs no divergence.  Half types load and
// store scalar_t and compute in float; grad_value is accumulated in the compute type.
//
// grad_value is a scatter.  The warp kernel adds into it with atomics (fast, order of additions
// unspecified); in deterministic mode the warp kernel skips it and `value_grad_kernel` computes
// it without atomics: one thread per (image, head, level, channel) walks all queries and points
// in order, and no two threads touch the same element (levels own disjoint key ranges).
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace mmext {
namespace ms_deform_attn {

constexpr int kWarp = 32;

template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

template <typename T>
__device__ __forceinline__ typename Acc<T>::type load(const T* p) {
  return static_cast<typename Acc<T>::type>(*p);
}
__device__ __forceinline__ float load(const at::Half* p) {
  return __half2float(*reinterpret_cast<const __half*>(p));
}
__device__ __forceinline__ float load(const at::BFloat16* p) {
  return __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(p));
}

struct Dims {
  int64_t bs, keys, heads, dims, queries, levels, points;
};

// The four corners of a bilinear sample in grid_sample's order (nw, ne, sw, se): key index or
// -1 outside the map, and weight.  False outside [-1, W) x [-1, H) (see the CPU kernel).
template <typename A>
struct Corners {
  int64_t key[4];
  A weight[4];
  A lx, ly, hx, hy;
};

template <typename A>
__device__ __forceinline__ bool corners_of(A loc_x, A loc_y, int64_t h, int64_t w, int64_t start,
                                           Corners<A>& c) {
  const A x = loc_x * static_cast<A>(w) - A(0.5);  // align_corners=False
  const A y = loc_y * static_cast<A>(h) - A(0.5);
  if (!(x >= A(-1) && y >= A(-1) && x < static_cast<A>(w) && y < static_cast<A>(h))) return false;
  const A fx = floor(x), fy = floor(y);
  const int64_t x0 = static_cast<int64_t>(fx), y0 = static_cast<int64_t>(fy);
  c.lx = x - fx;
  c.ly = y - fy;
  c.hx = (fx + A(1)) - x;
  c.hy = (fy + A(1)) - y;
  c.weight[0] = c.hx * c.hy;
  c.weight[1] = c.lx * c.hy;
  c.weight[2] = c.hx * c.ly;
  c.weight[3] = c.lx * c.ly;
  const bool west = x0 >= 0, east = x0 + 1 < w, north = y0 >= 0, south = y0 + 1 < h;
  const int64_t nw = start + y0 * w + x0;
  c.key[0] = north && west ? nw : -1;
  c.key[1] = north && east ? nw + 1 : -1;
  c.key[2] = south && west ? nw + w : -1;
  c.key[3] = south && east ? nw + w + 1 : -1;
  return true;
}

template <typename T>
__global__ void forward_kernel(const T* __restrict__ value, const int64_t* __restrict__ shapes,
                               const int64_t* __restrict__ starts, const T* __restrict__ loc,
                               const T* __restrict__ attn, T* __restrict__ out, Dims d) {
  using A = typename Acc<T>::type;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (warp >= d.bs * d.queries * d.heads) return;
  const int64_t h = warp % d.heads, b = warp / (d.heads * d.queries);
  const int64_t key_stride = d.heads * d.dims;
  const T* v_bh = value + b * d.keys * key_stride + h * d.dims;
  const int64_t s0 = warp * d.levels * d.points;
  for (int64_t ch = lane; ch < d.dims; ch += kWarp) {
    A acc = 0;
    for (int64_t l = 0; l < d.levels; ++l) {
      const int64_t lh = shapes[2 * l], lw = shapes[2 * l + 1], start = starts[l];
      for (int64_t p = 0; p < d.points; ++p) {
        const int64_t s = s0 + l * d.points + p;
        Corners<A> c;
        if (!corners_of<A>(load(loc + 2 * s), load(loc + 2 * s + 1), lh, lw, start, c)) continue;
        A sample = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (c.key[k] >= 0) sample += c.weight[k] * load(v_bh + c.key[k] * key_stride + ch);
        }
        acc += load(attn + s) * sample;
      }
    }
    out[warp * d.dims + ch] = static_cast<T>(acc);
  }
}

template <typename A>
__device__ __forceinline__ A warp_sum(A x) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// grad_loc and grad_attn per sample; grad_value_acc (compute type) by atomics when `scatter`.
template <typename T>
__global__ void backward_kernel(const T* __restrict__ grad_out, const T* __restrict__ value,
                                const int64_t* __restrict__ shapes,
                                const int64_t* __restrict__ starts, const T* __restrict__ loc,
                                const T* __restrict__ attn,
                                typename Acc<T>::type* __restrict__ grad_value_acc,
                                T* __restrict__ grad_loc, T* __restrict__ grad_attn, Dims d,
                                bool scatter) {
  using A = typename Acc<T>::type;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  // Whole warps return together (warp is uniform across the warp), so the shuffles below
  // always see 32 live lanes.
  if (warp >= d.bs * d.queries * d.heads) return;
  const int64_t h = warp % d.heads, b = warp / (d.heads * d.queries);
  const int64_t key_stride = d.heads * d.dims;
  const int64_t v_off = b * d.keys * key_stride + h * d.dims;
  const T* g = grad_out + warp * d.dims;
  const int64_t s0 = warp * d.levels * d.points;
  for (int64_t l = 0; l < d.levels; ++l) {
    const int64_t lh = shapes[2 * l], lw = shapes[2 * l + 1], start = starts[l];
    for (int64_t p = 0; p < d.points; ++p) {
      const int64_t s = s0 + l * d.points + p;
      Corners<A> c;
      if (!corners_of<A>(load(loc + 2 * s), load(loc + 2 * s + 1), lh, lw, start, c)) {
        if (lane == 0) {
          grad_attn[s] = static_cast<T>(0);
          grad_loc[2 * s] = grad_loc[2 * s + 1] = static_cast<T>(0);
        }
        continue;
      }
      const A w = load(attn + s);
      A gv[4] = {0, 0, 0, 0};  // g . v_corner, this lane's channels
      for (int64_t ch = lane; ch < d.dims; ch += kWarp) {
        const A gc = load(g + ch);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (c.key[k] < 0) continue;
          const int64_t at = v_off + c.key[k] * key_stride + ch;
          gv[k] += gc * load(value + at);
          if (scatter) atomicAdd(grad_value_acc + at, w * c.weight[k] * gc);
        }
      }
#pragma unroll
      for (int k = 0; k < 4; ++k) gv[k] = warp_sum(gv[k]);
      if (lane == 0) {
        grad_attn[s] = static_cast<T>(c.weight[0] * gv[0] + c.weight[1] * gv[1] +
                                      c.weight[2] * gv[2] + c.weight[3] * gv[3]);
        grad_loc[2 * s] = static_cast<T>(w * static_cast<A>(lw) *
                                         (c.hy * (gv[1] - gv[0]) + c.ly * (gv[3] - gv[2])));
        grad_loc[2 * s + 1] = static_cast<T>(w * static_cast<A>(lh) *
                                             (c.hx * (gv[2] - gv[0]) + c.lx * (gv[3] - gv[1])));
      }
    }
  }
}

// Deterministic grad_value: one thread per (image, head, level, channel), queries in order.
template <typename T>
__global__ void value_grad_kernel(const T* __restrict__ grad_out,
                                  const int64_t* __restrict__ shapes,
                                  const int64_t* __restrict__ starts, const T* __restrict__ loc,
                                  const T* __restrict__ attn,
                                  typename Acc<T>::type* __restrict__ grad_value_acc, Dims d) {
  using A = typename Acc<T>::type;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= d.bs * d.heads * d.levels * d.dims) return;
  const int64_t ch = t % d.dims, l = t / d.dims % d.levels;
  const int64_t h = t / (d.dims * d.levels) % d.heads, b = t / (d.dims * d.levels * d.heads);
  const int64_t lh = shapes[2 * l], lw = shapes[2 * l + 1], start = starts[l];
  const int64_t key_stride = d.heads * d.dims;
  A* gv = grad_value_acc + b * d.keys * key_stride + h * d.dims + ch;
  for (int64_t q = 0; q < d.queries; ++q) {
    const int64_t bqh = (b * d.queries + q) * d.heads + h;
    const A gc = load(grad_out + bqh * d.dims + ch);
    for (int64_t p = 0; p < d.points; ++p) {
      const int64_t s = (bqh * d.levels + l) * d.points + p;
      Corners<A> c;
      if (!corners_of<A>(load(loc + 2 * s), load(loc + 2 * s + 1), lh, lw, start, c)) continue;
      const A w = load(attn + s);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (c.key[k] >= 0) gv[c.key[k] * key_stride] += w * c.weight[k] * gc;
      }
    }
  }
}

}  // namespace ms_deform_attn
}  // namespace mmext
