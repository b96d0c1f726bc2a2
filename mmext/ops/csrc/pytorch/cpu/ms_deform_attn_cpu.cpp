// CPU kernels of multi-scale deformable attention (see ../ms_deform_attn.cpp for the maths).
//
// value is [bs, keys, heads, head_dims], so one head's row of a level is head_dims contiguous
// numbers at a stride of heads * head_dims: the samples of one (image, head, level) hit rows
// spread over the whole tensor, and reading them at random is bound by cache misses.  Both
// kernels therefore work per (image, head, level): they first copy that level's rows of that
// head into a dense per-thread buffer ([H * W, head_dims], at most a few MiB, so it stays in
// L2/L3 while the samples read it), and the channel loops over a corner vectorise.
//
// Forward: tasks are (image, head, block of queries); the levels are walked in order inside a
// task, so each output element is summed in the same order whatever the threads.
//
// Backward: grad_sampling_locations and grad_attention_weights belong to one sample each, but
// grad_value is a scatter.  Tasks are (image, head, level) triples: a triple's samples only
// scatter into its own level's rows of its own head, which it accumulates in a dense buffer
// walking its queries in order and then writes out once.  No atomics, no per-thread partial
// copies of grad_value, every element written once (so it needs no zeroing), and the result is
// bit-identical for any number of threads.  Corners outside the map read a zero row and write a
// scratch row, so the channel loops have no branches.
//
// ISA: setup.py compiles for the baseline x86-64 ISA (SSE2).  The per-task bodies are written
// once, as always-inline templates, and instantiated twice: in plain functions (the baseline) and
// in functions with __attribute__((target("avx2"))), which run when the CPU has AVX2.  (A lambda
// is a function of its own, with the default target: the parallel_for lambdas only call these.)
// AVX2 without FMA on purpose: GCC contracts a * b + c into one FMA in C++ whenever the target has
// it (-ffp-contract=fast), which rounds once instead of twice.  Every channel loop is elementwise
// or sums into 8 fixed lanes in a fixed tree, so the two builds give bit-identical results
// (tested); MMEXT_MSDA_CPU_KERNEL=baseline forces the baseline build at run time.  head_dims = 32
// (every DETR-family model: 256 channels, 8 heads) has a variant with the rows held in registers
// as GCC vectors of 32 bytes (one AVX register, two SSE registers at the baseline).
//
// What each part is worth at DINO's decoder shapes (tools/benchmark/bench_ms_deform_attn.py:
// batch 2, 22,223 keys, 900 queries, 8 heads x 32, 4 points, fp32, 1 thread, AMD EPYC Zen 4,
// 2026-12-07; docs/benchmarks.md has the runs).  Instructions per fwd + bwd (callgrind, without
// the memset that zeroes the backward's level buffer): 340 M for the scalar loops before the
// register-row variant, 218 M for the baseline build, 119 M for the AVX2 build.  The kernels are
// bound by memory, though (the row copies, and the random corner reads of a level buffer that
// outgrows L2 at the largest level): the AVX2 build takes a fifth to a quarter less CPU time
// than the baseline one.  grad_value in huge pages (empty_like_huge_pages below) takes 35-45%
// off the backward where transparent huge pages are "madvise", as on that machine, and reusing
// the freed grad_value's mapping (same function) lets the backward scale with threads: 22-24 ms
// on 1 thread and 10-12 ms on 2, against 26 ms and 13-61 ms with fresh pages (2026-12-07).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "ms_deform_attn_dispatch.hpp"
#include "pytorch_cpp_helper.hpp"

// 1: an AVX2 build of the kernels besides the baseline one (GCC on x86); 0: the baseline build
// only (-DMMEXT_MSDA_X86_SIMD=0 to test that configuration).
#ifndef MMEXT_MSDA_X86_SIMD
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__)
#define MMEXT_MSDA_X86_SIMD 1
#else
#define MMEXT_MSDA_X86_SIMD 0
#endif
#endif

#define MMEXT_MSDA_INLINE inline __attribute__((always_inline))
// The 32-byte vector helpers change ABI without AVX; they are internal and always inlined.
#pragma GCC diagnostic ignored "-Wpsabi"

using at::Tensor;

namespace {

struct Level {
  int64_t h, w, start;
};

// The level table, checked against value's length (the kernels trust it for memory accesses).
std::vector<Level> read_levels(const Tensor& spatial_shapes, const Tensor& level_start_index,
                               int64_t keys) {
  const int64_t* hw = spatial_shapes.data_ptr<int64_t>();
  const int64_t* start = level_start_index.data_ptr<int64_t>();
  std::vector<Level> levels(spatial_shapes.size(0));
  int64_t total = 0;
  for (size_t l = 0; l < levels.size(); ++l) {
    levels[l] = {hw[2 * l], hw[2 * l + 1], start[l]};
    TORCH_CHECK(levels[l].h > 0 && levels[l].w > 0, "spatial_shapes[", l, "] = (", levels[l].h,
                ", ", levels[l].w, ") is not a positive (H, W)");
    TORCH_CHECK(levels[l].start == total, "level_start_index[", l, "] = ", levels[l].start,
                ", but the levels before it hold ", total, " keys");
    total += levels[l].h * levels[l].w;
  }
  TORCH_CHECK(total == keys, "value has ", keys, " keys but spatial_shapes sum to ", total);
  return levels;
}

// The four corners of one bilinear sample, in grid_sample's order (north-west, north-east,
// south-west, south-east): key index or -1 outside the map, and bilinear weight.
template <typename T>
struct Corners {
  int64_t key[4];
  T weight[4];
  T lx, ly, hx, hy;  // fractional offsets and their complements
};

// False when no corner can matter: the sample is outside [-1, W) x [-1, H) in pixels.  At -1
// itself the in-map corner has weight 0 but, as in grid_sample, still a location gradient.
template <typename T>
MMEXT_MSDA_INLINE bool corners_of(T loc_x, T loc_y, const Level& lv, Corners<T>& c) {
  const T x = loc_x * static_cast<T>(lv.w) - T(0.5);  // align_corners=False pixel coordinates
  const T y = loc_y * static_cast<T>(lv.h) - T(0.5);
  if (!(x >= T(-1) && y >= T(-1) && x < static_cast<T>(lv.w) && y < static_cast<T>(lv.h))) {
    return false;
  }
  const T fx = std::floor(x), fy = std::floor(y);
  const int64_t x0 = static_cast<int64_t>(fx), y0 = static_cast<int64_t>(fy);
  c.lx = x - fx;
  c.ly = y - fy;
  c.hx = (fx + T(1)) - x;
  c.hy = (fy + T(1)) - y;
  c.weight[0] = c.hx * c.hy;
  c.weight[1] = c.lx * c.hy;
  c.weight[2] = c.hx * c.ly;
  c.weight[3] = c.lx * c.ly;
  const bool west = x0 >= 0, east = x0 + 1 < lv.w, north = y0 >= 0, south = y0 + 1 < lv.h;
  const int64_t nw = lv.start + y0 * lv.w + x0;
  c.key[0] = north && west ? nw : -1;
  c.key[1] = north && east ? nw + 1 : -1;
  c.key[2] = south && west ? nw + lv.w : -1;
  c.key[3] = south && east ? nw + lv.w + 1 : -1;
  return true;
}

// The 8 lanes of dot(), added in a fixed tree.
template <typename T>
MMEXT_MSDA_INLINE T lane_sum(const T* acc) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// sum_c a[c] * b[c] over 8 fixed lanes (lane j takes channels j, j + 8, ...): vectorisable
// without reassociating, so the sum is the same whatever the compiler or ISA.
template <typename T>
MMEXT_MSDA_INLINE T dot(const T* __restrict__ a, const T* __restrict__ b, int64_t n) {
  T acc[8] = {};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[c + j] * b[c + j];
  }
  for (int j = 0; c + j < n; ++j) acc[j] += a[c + j] * b[c + j];
  return lane_sum(acc);
}

// ------------------------------------------------------------------------------------------
// Rows of kD channels in GCC vectors of 32 bytes (kD = 32: 4 float or 8 double vectors).
// Every operation is elementwise and in the order of the scalar loops, so these compute the
// same numbers as them, bit for bit.
// ------------------------------------------------------------------------------------------

template <typename T>
struct Vec {
  typedef T V __attribute__((vector_size(32)));
  static constexpr int kLanes = 32 / sizeof(T);
};

template <typename T>
MMEXT_MSDA_INLINE typename Vec<T>::V vload(const T* p) {
  typename Vec<T>::V v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

// v by reference: GCC notes an ABI change for a 32-byte vector passed by value without AVX,
// even with -Wpsabi off.  The local copy keeps the vector in a register.
template <typename T>
MMEXT_MSDA_INLINE void vstore(T* p, const typename Vec<T>::V& v) {
  const typename Vec<T>::V x = v;
  __builtin_memcpy(p, &x, sizeof x);
}

// s in every lane, with no arithmetic (V{} + s would turn -0 into +0).  GCC 12 builds it from
// 4 inserts and a 128-bit insert even in the AVX2 build, where a file compiled with -mavx2 gets
// one vbroadcastss (s - V{} and __builtin_shuffle do no better): the kernels then run 7% more
// instructions than an all-AVX2 build, with no measurable difference in time (they wait on
// memory), so the one-source design stays.
template <typename T>
MMEXT_MSDA_INLINE typename Vec<T>::V vsplat(T s) {
  typename Vec<T>::V v;
  for (int j = 0; j < Vec<T>::kLanes; ++j) v[j] = s;
  return v;
}

// lane_sum() of the 8 lanes in kPer8 vectors, in its tree: (0 + 1), (2 + 3), ... as adjacent
// lanes, then ((0 + 1) + (2 + 3)) and ((4 + 5) + (6 + 7)), then their sum.  Shuffles instead
// of a round trip through memory; every addition has the same operands in the same order.
template <typename T>
MMEXT_MSDA_INLINE T vlane_sum(const typename Vec<T>::V* acc) {
  typedef typename Vec<T>::V V;
  if constexpr (Vec<T>::kLanes == 8) {  // float: one vector
    typedef int M __attribute__((vector_size(32)));
    const V p = acc[0] + __builtin_shuffle(acc[0], M{1, 0, 3, 2, 5, 4, 7, 6});
    const V q = p + __builtin_shuffle(p, M{2, 3, 0, 1, 6, 7, 4, 5});
    return q[0] + q[4];
  } else {  // double: two vectors of 4
    static_assert(Vec<T>::kLanes == 4, "32-byte vectors of float or double");
    typedef long long M __attribute__((vector_size(32)));
    T half[2];
    for (int k = 0; k < 2; ++k) {
      const V p = acc[k] + __builtin_shuffle(acc[k], M{1, 0, 3, 2});
      const V q = p + __builtin_shuffle(p, M{2, 3, 0, 1});
      half[k] = q[0];
    }
    return half[0] + half[1];
  }
}

template <typename T, int kD>
struct Row {
  static_assert(kD % 8 == 0, "rows in registers hold whole groups of 8 lanes");
  static constexpr int kN = kD / Vec<T>::kLanes;  // vectors per row
  static constexpr int kPer8 = 8 / Vec<T>::kLanes;  // vectors per group of 8 lanes
  typename Vec<T>::V v[kN];

  MMEXT_MSDA_INLINE void load(const T* p) {
    for (int i = 0; i < kN; ++i) v[i] = vload(p + i * Vec<T>::kLanes);
  }
  MMEXT_MSDA_INLINE void store(T* p) const {
    for (int i = 0; i < kN; ++i) vstore(p + i * Vec<T>::kLanes, v[i]);
  }
  // dot(v, b, kD): lane j of vector group i takes channel 8 * i + j, as dot()'s acc[j].
  MMEXT_MSDA_INLINE T dot(const T* __restrict__ b) const {
    typename Vec<T>::V acc[kPer8];
    for (int k = 0; k < kPer8; ++k) acc[k] = typename Vec<T>::V{};  // +0, as dot()'s acc
    for (int i = 0; i < kN; i += kPer8) {
      for (int k = 0; k < kPer8; ++k) {
        acc[k] += v[i + k] * vload(b + (i + k) * Vec<T>::kLanes);
      }
    }
    return vlane_sum<T>(acc);
  }
  // dst += coef * v
  MMEXT_MSDA_INLINE void axpy_to(T coef, T* dst) const {
    const typename Vec<T>::V s = vsplat(coef);
    for (int i = 0; i < kN; ++i) {
      T* d = dst + i * Vec<T>::kLanes;
      vstore(d, vload(d) + s * v[i]);
    }
  }
};

struct Dims {
  int64_t bs, keys, heads, dims, queries, levels, points;
};

Dims dims_of(const Tensor& value, const Tensor& sampling_locations) {
  return {value.size(0),
          value.size(1),
          value.size(2),
          value.size(3),
          sampling_locations.size(1),
          sampling_locations.size(3),
          sampling_locations.size(4)};
}

// Per-thread dense copies of one (image, head, level): rows [0, n) of the level, then a zero row
// (what corners outside the map read) and a scratch row (what they write).  The storage is
// thread_local and kept between calls (a few MiB per thread at DETR sizes): freshly mapped
// buffers would cost a page fault per 4 KiB on every call.  It starts on a 64-byte boundary, so
// that a row of 32 floats spans two cache lines, not three.
template <typename T>
struct LevelBuffer {
  static constexpr int64_t kAlign = 64 / sizeof(T);
  T* base;
  int64_t dims, zero_row, scratch_row;

  LevelBuffer(std::vector<T>& storage, int64_t max_rows, int64_t dims)
      : dims(dims), zero_row(max_rows), scratch_row(max_rows + 1) {
    if (storage.size() < static_cast<size_t>((max_rows + 2) * dims + kAlign)) {
      storage.resize((max_rows + 2) * dims + kAlign);
    }
    const uintptr_t addr = reinterpret_cast<uintptr_t>(storage.data());
    base = storage.data() + (-(addr / sizeof(T)) & (kAlign - 1));
    std::fill(row(zero_row), row(zero_row + 1), T(0));
  }
  T* row(int64_t key) { return base + key * dims; }
  T* row_or(int64_t key, int64_t fallback) { return row(key >= 0 ? key : fallback); }
};

template <typename T>
std::vector<T>& thread_storage(int which) {
  thread_local std::vector<T> storage[2];
  return storage[which];
}

int64_t max_level_keys(const std::vector<Level>& levels) {
  int64_t n = 0;
  for (const Level& lv : levels) n = std::max(n, lv.h * lv.w);
  return n;
}

// Rows of head_dims numbers a key_stride apart (one head's rows) <-> dense rows.  The strided
// side is prefetched a few rows ahead: hardware prefetchers do not follow a 1 KiB stride across
// pages.
constexpr int64_t kPrefetchRows = 8;

template <typename T>
MMEXT_MSDA_INLINE void gather_rows(const T* __restrict__ src, int64_t key_stride, int64_t n,
                                   int64_t dims, T* __restrict__ dst) {
  for (int64_t key = 0; key < n; ++key) {
    if (key + kPrefetchRows < n) {
      for (int64_t byte = 0; byte < dims * int64_t(sizeof(T)); byte += 64) {
        const T* ahead = src + (key + kPrefetchRows) * key_stride;
        __builtin_prefetch(reinterpret_cast<const char*>(ahead) + byte);
      }
    }
    const T* __restrict__ s = src + key * key_stride;
    T* __restrict__ d = dst + key * dims;
    for (int64_t ch = 0; ch < dims; ++ch) d[ch] = s[ch];
  }
}

template <typename T>
MMEXT_MSDA_INLINE void scatter_rows(const T* __restrict__ src, int64_t n, int64_t dims,
                                    T* __restrict__ dst, int64_t key_stride) {
  for (int64_t key = 0; key < n; ++key) {
    if (key + kPrefetchRows < n) {
      for (int64_t byte = 0; byte < dims * int64_t(sizeof(T)); byte += 64) {
        T* ahead = dst + (key + kPrefetchRows) * key_stride;
        __builtin_prefetch(reinterpret_cast<char*>(ahead) + byte, 1);
      }
    }
    const T* __restrict__ s = src + key * dims;
    T* __restrict__ d = dst + key * key_stride;
    for (int64_t ch = 0; ch < dims; ++ch) d[ch] = s[ch];
  }
}

// ------------------------------------------------------------------------------------------
// Forward.  kD: head_dims when it is fixed at compile time (rows in registers), 0 otherwise.
// ------------------------------------------------------------------------------------------

template <typename T>
struct FwdArgs {
  const T* value;
  const Level* levels;
  const T* loc;
  const T* attn;
  T* out;
  Dims d;
  int64_t blocks, block_len;
};

// o[ch] += attn * bilinear sample, for the points of one (image, query, head, level).
template <typename T, int kD>
MMEXT_MSDA_INLINE void add_samples(const FwdArgs<T>& a, LevelBuffer<T>& buf, const Level& lv,
                                   int64_t s0, T* __restrict__ o) {
  const int64_t dims = kD > 0 ? kD : a.d.dims;
  Row<T, (kD > 0 ? kD : 8)> acc;
  if constexpr (kD > 0) acc.load(o);
  for (int64_t p = 0; p < a.d.points; ++p) {
    const int64_t s = s0 + p;
    Corners<T> c;
    if (!corners_of(a.loc[2 * s], a.loc[2 * s + 1], lv, c)) continue;
    const T w = a.attn[s];
    const T* __restrict__ v0 = buf.row_or(c.key[0], buf.zero_row);
    const T* __restrict__ v1 = buf.row_or(c.key[1], buf.zero_row);
    const T* __restrict__ v2 = buf.row_or(c.key[2], buf.zero_row);
    const T* __restrict__ v3 = buf.row_or(c.key[3], buf.zero_row);
    if constexpr (kD > 0) {
      typedef typename Vec<T>::V V;
      const V vw = vsplat(w), c0 = vsplat(c.weight[0]), c1 = vsplat(c.weight[1]);
      const V c2 = vsplat(c.weight[2]), c3 = vsplat(c.weight[3]);
      for (int i = 0; i < acc.kN; ++i) {
        const int64_t ch = i * Vec<T>::kLanes;
        acc.v[i] += vw * (((c0 * vload(v0 + ch) + c1 * vload(v1 + ch)) + c2 * vload(v2 + ch)) +
                          c3 * vload(v3 + ch));
      }
    } else {
      for (int64_t ch = 0; ch < dims; ++ch) {
        o[ch] += w * (((c.weight[0] * v0[ch] + c.weight[1] * v1[ch]) + c.weight[2] * v2[ch]) +
                      c.weight[3] * v3[ch]);
      }
    }
  }
  if constexpr (kD > 0) acc.store(o);
}

template <typename T, int kD>
MMEXT_MSDA_INLINE void forward_tasks(const FwdArgs<T>& a, LevelBuffer<T>& buf, int64_t begin,
                                     int64_t end) {
  const Dims& d = a.d;
  const int64_t dims = kD > 0 ? kD : d.dims;
  const int64_t key_stride = d.heads * dims;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t block = task % a.blocks, h = task / a.blocks % d.heads;
    const int64_t b = task / (a.blocks * d.heads);
    const int64_t q0 = block * a.block_len, q1 = std::min(d.queries, q0 + a.block_len);
    for (int64_t q = q0; q < q1; ++q) {
      T* o = a.out + ((b * d.queries + q) * d.heads + h) * dims;
      for (int64_t ch = 0; ch < dims; ++ch) o[ch] = T(0);
    }
    for (int64_t l = 0; l < d.levels; ++l) {
      const Level lv{a.levels[l].h, a.levels[l].w, 0};  // keys relative to the buffer
      gather_rows(a.value + (b * d.keys + a.levels[l].start) * key_stride + h * dims, key_stride,
                  lv.h * lv.w, dims, buf.row(0));
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t bqh = (b * d.queries + q) * d.heads + h;
        add_samples<T, kD>(a, buf, lv, (bqh * d.levels + l) * d.points, a.out + bqh * dims);
      }
    }
  }
}

template <typename T, int kD>
void forward_tasks_baseline(const FwdArgs<T>& a, LevelBuffer<T>& buf, int64_t begin,
                            int64_t end) {
  forward_tasks<T, kD>(a, buf, begin, end);
}

#if MMEXT_MSDA_X86_SIMD
template <typename T, int kD>
__attribute__((target("avx2"))) void forward_tasks_avx2(const FwdArgs<T>& a, LevelBuffer<T>& buf,
                                                        int64_t begin, int64_t end) {
  forward_tasks<T, kD>(a, buf, begin, end);
}
#endif

// ------------------------------------------------------------------------------------------
// Backward
// ------------------------------------------------------------------------------------------

template <typename T>
struct BwdArgs {
  const T* grad_out;
  const T* value;
  const Level* levels;
  const T* loc;
  const T* attn;
  T* grad_value;
  T* grad_loc;
  T* grad_attn;
  Dims d;
};

// The gradients of the points of one (image, query, head, level) with output gradient g; their
// grad_value terms go into gbuf.
template <typename T, int kD>
MMEXT_MSDA_INLINE void sample_grads(const BwdArgs<T>& a, LevelBuffer<T>& vbuf,
                                    LevelBuffer<T>& gbuf, const Level& lv, int64_t s0,
                                    const T* __restrict__ g) {
  const int64_t dims = kD > 0 ? kD : a.d.dims;
  Row<T, (kD > 0 ? kD : 8)> gr;
  if constexpr (kD > 0) gr.load(g);
  for (int64_t p = 0; p < a.d.points; ++p) {
    const int64_t s = s0 + p;
    Corners<T> c;
    if (!corners_of(a.loc[2 * s], a.loc[2 * s + 1], lv, c)) {
      a.grad_attn[s] = a.grad_loc[2 * s] = a.grad_loc[2 * s + 1] = T(0);
      continue;
    }
    const T w = a.attn[s];
    T gv[4];  // g . v_corner (0 outside the map: the zero row)
    for (int k = 0; k < 4; ++k) {
      const T* v = vbuf.row_or(c.key[k], vbuf.zero_row);
      if constexpr (kD > 0) {
        gv[k] = gr.dot(v);
      } else {
        gv[k] = dot(g, v, dims);
      }
    }
    a.grad_attn[s] =
        ((c.weight[0] * gv[0] + c.weight[1] * gv[1]) + c.weight[2] * gv[2]) + c.weight[3] * gv[3];
    // d(sample)/dx = hy * (ne - nw) + ly * (se - sw); dx/dloc_x = W (and alike for y)
    a.grad_loc[2 * s] =
        w * static_cast<T>(lv.w) * (c.hy * (gv[1] - gv[0]) + c.ly * (gv[3] - gv[2]));
    a.grad_loc[2 * s + 1] =
        w * static_cast<T>(lv.h) * (c.hx * (gv[2] - gv[0]) + c.lx * (gv[3] - gv[1]));
    for (int k = 0; k < 4; ++k) {
      T* dst = gbuf.row_or(c.key[k], gbuf.scratch_row);
      const T coef = w * c.weight[k];
      if constexpr (kD > 0) {
        gr.axpy_to(coef, dst);
      } else {
        for (int64_t ch = 0; ch < dims; ++ch) dst[ch] += coef * g[ch];
      }
    }
  }
}

template <typename T, int kD>
MMEXT_MSDA_INLINE void backward_tasks(const BwdArgs<T>& a, LevelBuffer<T>& vbuf,
                                      LevelBuffer<T>& gbuf, int64_t begin, int64_t end) {
  const Dims& d = a.d;
  const int64_t dims = kD > 0 ? kD : d.dims;
  const int64_t key_stride = d.heads * dims;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t l = task % d.levels, h = task / d.levels % d.heads;
    const int64_t b = task / (d.levels * d.heads);
    const Level lv{a.levels[l].h, a.levels[l].w, 0};  // keys relative to the buffers
    const int64_t rows = lv.h * lv.w;
    const int64_t offset = (b * d.keys + a.levels[l].start) * key_stride + h * dims;
    gather_rows(a.value + offset, key_stride, rows, dims, vbuf.row(0));
    std::fill(gbuf.row(0), gbuf.row(rows), T(0));
    for (int64_t q = 0; q < d.queries; ++q) {
      const int64_t bqh = (b * d.queries + q) * d.heads + h;
      sample_grads<T, kD>(a, vbuf, gbuf, lv, (bqh * d.levels + l) * d.points,
                          a.grad_out + bqh * dims);
    }
    // every element of grad_value is written once, here
    scatter_rows(gbuf.row(0), rows, dims, a.grad_value + offset, key_stride);
  }
}

template <typename T, int kD>
void backward_tasks_baseline(const BwdArgs<T>& a, LevelBuffer<T>& vbuf, LevelBuffer<T>& gbuf,
                             int64_t begin, int64_t end) {
  backward_tasks<T, kD>(a, vbuf, gbuf, begin, end);
}

#if MMEXT_MSDA_X86_SIMD
template <typename T, int kD>
__attribute__((target("avx2"))) void backward_tasks_avx2(const BwdArgs<T>& a,
                                                         LevelBuffer<T>& vbuf,
                                                         LevelBuffer<T>& gbuf, int64_t begin,
                                                         int64_t end) {
  backward_tasks<T, kD>(a, vbuf, gbuf, begin, end);
}
#endif

// ------------------------------------------------------------------------------------------
// Dispatch
// ------------------------------------------------------------------------------------------

#if MMEXT_MSDA_X86_SIMD
// Whether the AVX2 build runs: the CPU has AVX2 and the caller has not asked for the baseline
// build (MMEXT_MSDA_CPU_KERNEL=baseline, read per call so tests can compare the two).
bool use_avx2() {
  static const bool cpu_ok = __builtin_cpu_supports("avx2");
  const char* env = std::getenv("MMEXT_MSDA_CPU_KERNEL");
  return cpu_ok && !(env != nullptr && std::strcmp(env, "baseline") == 0);
}
#endif

template <typename T>
using FwdTasks = void (*)(const FwdArgs<T>&, LevelBuffer<T>&, int64_t, int64_t);
template <typename T>
using BwdTasks = void (*)(const BwdArgs<T>&, LevelBuffer<T>&, LevelBuffer<T>&, int64_t, int64_t);

template <typename T>
FwdTasks<T> pick_forward(int64_t dims) {
#if MMEXT_MSDA_X86_SIMD
  if (use_avx2()) return dims == 32 ? forward_tasks_avx2<T, 32> : forward_tasks_avx2<T, 0>;
#endif
  return dims == 32 ? forward_tasks_baseline<T, 32> : forward_tasks_baseline<T, 0>;
}

template <typename T>
BwdTasks<T> pick_backward(int64_t dims) {
#if MMEXT_MSDA_X86_SIMD
  if (use_avx2()) return dims == 32 ? backward_tasks_avx2<T, 32> : backward_tasks_avx2<T, 0>;
#endif
  return dims == 32 ? backward_tasks_baseline<T, 32> : backward_tasks_baseline<T, 0>;
}

template <typename T>
void forward_kernel(const T* value, const std::vector<Level>& levels, const T* loc, const T* attn,
                    T* out, const Dims& d) {
  // Blocks of queries only when there are fewer (image, head) pairs than threads: each block
  // copies its levels again.
  const int64_t pairs = d.bs * d.heads;
  const int64_t blocks = std::max<int64_t>(
      1, std::min<int64_t>(d.queries, (at::get_num_threads() + pairs - 1) / pairs));
  const FwdArgs<T> args{value, levels.data(), loc, attn, out, d, blocks,
                        (d.queries + blocks - 1) / blocks};
  const int64_t max_rows = max_level_keys(levels);
  const FwdTasks<T> tasks = pick_forward<T>(d.dims);
  at::parallel_for(0, pairs * blocks, 1, [&](int64_t begin, int64_t end) {
    LevelBuffer<T> buf(thread_storage<T>(0), max_rows, d.dims);
    tasks(args, buf, begin, end);
  });
}

template <typename T>
void backward_kernel(const BwdArgs<T>& args, const std::vector<Level>& levels) {
  const Dims& d = args.d;
  const int64_t max_rows = max_level_keys(levels);
  const BwdTasks<T> tasks = pick_backward<T>(d.dims);
  at::parallel_for(0, d.bs * d.heads * d.levels, 1, [&](int64_t begin, int64_t end) {
    LevelBuffer<T> vbuf(thread_storage<T>(0), max_rows, d.dims);
    LevelBuffer<T> gbuf(thread_storage<T>(1), max_rows, d.dims);
    tasks(args, vbuf, gbuf, begin, end);
  });
}

// An uninitialised tensor like `like`.  A big one (grad_value: 45 MB at DINO's shapes) gets
// its own anonymous mapping, 2 MiB-aligned and advised to use transparent huge pages: its first
// touch then costs a page fault per 2 MiB instead of per 4 KiB, which on a VM was ~half of the
// cost of writing it.  Where THP is off, this is what glibc's malloc does for such a size anyway.
//
// When such a tensor is freed, its mapping is kept (one at a time, the most recent, with
// MADV_FREE so that the kernel may take the pages back under memory pressure) and the next big
// enough grad_value reuses it: the backward writes every element, so it needs no zeroing, and
// pages still mapped cost no fault at all.  Fresh pages were the part of the backward that did
// not scale with threads: on a 2-vCPU VM (2026-12-07), a second thread faulting in its half of a
// fresh grad_value often waited for the hypervisor to back the guest's free pages (4-5 ms per
// 2 MiB page instead of 0.2 ms), which made the 2-thread backward slower than the 1-thread one
// in runs of 10-12 calls out of 30.  MMEXT_MSDA_CPU_REUSE=0 (read per call) turns the reuse off.
#if defined(__linux__) && defined(MADV_HUGEPAGE)
constexpr size_t kHuge = size_t(2) << 20;

struct Mapping {
  void* base = nullptr;
  size_t length = 0;
};

std::mutex& mapping_mutex() {
  static std::mutex m;
  return m;
}

Mapping& kept_mapping() {
  static Mapping kept;
  return kept;
}

bool reuse_mappings() {
  const char* env = std::getenv("MMEXT_MSDA_CPU_REUSE");
  return !(env != nullptr && std::strcmp(env, "0") == 0);
}

// The deleter of the tensors below (any thread): keep the mapping for the next call, or unmap.
void release_mapping(void* base, size_t length) {
  if (reuse_mappings()) {
    void* data = reinterpret_cast<void*>(
        (reinterpret_cast<uintptr_t>(base) + kHuge - 1) / kHuge * kHuge);
#ifdef MADV_FREE
    madvise(data, length - kHuge, MADV_FREE);  // advice only, like MADV_HUGEPAGE
#endif
    Mapping old;
    {
      std::lock_guard<std::mutex> lock(mapping_mutex());
      old = kept_mapping();
      kept_mapping() = {base, length};
    }
    if (old.base != nullptr) munmap(old.base, old.length);
    return;
  }
  munmap(base, length);
}

// A mapping of `length` bytes: the kept one if it is that long or at most twice as long (else it
// is unmapped: a grad_value of another size took its place), or a new one.
Mapping acquire_mapping(size_t length) {
  Mapping kept;
  {
    std::lock_guard<std::mutex> lock(mapping_mutex());
    std::swap(kept, kept_mapping());
  }
  if (kept.base != nullptr) {
    if (kept.length >= length && kept.length <= 2 * length && reuse_mappings()) return kept;
    munmap(kept.base, kept.length);
  }
  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return {};
  const uintptr_t addr = reinterpret_cast<uintptr_t>(base);
  void* data = reinterpret_cast<void*>((addr + kHuge - 1) / kHuge * kHuge);
  madvise(data, length - kHuge, MADV_HUGEPAGE);  // advice only: its failure is harmless
  return {base, length};
}
#endif

Tensor empty_like_huge_pages(const Tensor& like) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const size_t bytes = static_cast<size_t>(like.numel()) * like.element_size();
  if (bytes >= 4 * kHuge) {
    const Mapping m = acquire_mapping((bytes + kHuge - 1) / kHuge * kHuge + kHuge);
    if (m.base != nullptr) {
      const uintptr_t addr = reinterpret_cast<uintptr_t>(m.base);
      void* data = reinterpret_cast<void*>((addr + kHuge - 1) / kHuge * kHuge);
      return at::from_blob(
          data, like.sizes(), [m](void*) { release_mapping(m.base, m.length); },
          like.options());
    }
  }
#endif
  return at::empty_like(like);
}

Tensor ms_deform_attn_fwd_cpu(const Tensor& value, const Tensor& spatial_shapes,
                              const Tensor& level_start_index, const Tensor& sampling_locations,
                              const Tensor& attention_weights) {
  const Dims d = dims_of(value, sampling_locations);
  const std::vector<Level> levels = read_levels(spatial_shapes, level_start_index, d.keys);
  Tensor out = at::empty({d.bs, d.queries, d.heads * d.dims}, value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_fwd_cpu", [&] {
    forward_kernel<scalar_t>(value.data_ptr<scalar_t>(), levels,
                             sampling_locations.data_ptr<scalar_t>(),
                             attention_weights.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), d);
  });
  return out;
}

std::vector<Tensor> ms_deform_attn_bwd_cpu(const Tensor& grad_output, const Tensor& value,
                                           const Tensor& spatial_shapes,
                                           const Tensor& level_start_index,
                                           const Tensor& sampling_locations,
                                           const Tensor& attention_weights,
                                           bool /*deterministic: always*/) {
  const Dims d = dims_of(value, sampling_locations);
  const std::vector<Level> levels = read_levels(spatial_shapes, level_start_index, d.keys);
  Tensor grad_value = empty_like_huge_pages(value);  // the levels partition the keys
  Tensor grad_loc = at::empty_like(sampling_locations);
  Tensor grad_attn = at::empty_like(attention_weights);
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_bwd_cpu", [&] {
    const BwdArgs<scalar_t> args{
        grad_output.data_ptr<scalar_t>(),       value.data_ptr<scalar_t>(),
        levels.data(),                          sampling_locations.data_ptr<scalar_t>(),
        attention_weights.data_ptr<scalar_t>(), grad_value.data_ptr<scalar_t>(),
        grad_loc.data_ptr<scalar_t>(),          grad_attn.data_ptr<scalar_t>(),
        d};
    backward_kernel<scalar_t>(args, levels);
  });
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace

MMEXT_REGISTER_IMPL(ms_deform_attn_fwd, CPU, ms_deform_attn_fwd_cpu)
MMEXT_REGISTER_IMPL(ms_deform_attn_bwd, CPU, ms_deform_attn_bwd_cpu)
