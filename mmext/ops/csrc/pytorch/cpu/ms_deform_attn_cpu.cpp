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
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ms_deform_attn_dispatch.hpp"
#include "pytorch_cpp_helper.hpp"

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
inline bool corners_of(T loc_x, T loc_y, const Level& lv, Corners<T>& c) {
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

// sum_c a[c] * b[c] over 8 fixed lanes: vectorisable without reassociating, so the sum is the
// same whatever the compiler or ISA.
template <typename T>
inline T dot(const T* __restrict__ a, const T* __restrict__ b, int64_t n) {
  T acc[8] = {};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[c + j] * b[c + j];
  }
  for (int j = 0; c + j < n; ++j) acc[j] += a[c + j] * b[c + j];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

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
// buffers would cost a page fault per 4 KiB on every call.
template <typename T>
struct LevelBuffer {
  T* base;
  int64_t dims, zero_row, scratch_row;

  LevelBuffer(std::vector<T>& storage, int64_t max_rows, int64_t dims)
      : dims(dims), zero_row(max_rows), scratch_row(max_rows + 1) {
    if (storage.size() < static_cast<size_t>((max_rows + 2) * dims)) {
      storage.resize((max_rows + 2) * dims);
    }
    base = storage.data();
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
void gather_rows(const T* __restrict__ src, int64_t key_stride, int64_t n, int64_t dims,
                 T* __restrict__ dst) {
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
void scatter_rows(const T* __restrict__ src, int64_t n, int64_t dims, T* __restrict__ dst,
                  int64_t key_stride) {
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

template <typename T>
void forward_kernel(const T* __restrict__ value, const std::vector<Level>& levels,
                    const T* __restrict__ loc, const T* __restrict__ attn, T* __restrict__ out,
                    const Dims& d) {
  const int64_t key_stride = d.heads * d.dims;
  // Blocks of queries only when there are fewer (image, head) pairs than threads: each block
  // copies its levels again.
  const int64_t pairs = d.bs * d.heads;
  const int64_t blocks = std::max<int64_t>(
      1, std::min<int64_t>(d.queries, (at::get_num_threads() + pairs - 1) / pairs));
  const int64_t block_len = (d.queries + blocks - 1) / blocks;
  const int64_t max_rows = max_level_keys(levels);
  at::parallel_for(0, pairs * blocks, 1, [&](int64_t begin, int64_t end) {
    LevelBuffer<T> buf(thread_storage<T>(0), max_rows, d.dims);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t block = task % blocks, h = task / blocks % d.heads;
      const int64_t b = task / (blocks * d.heads);
      const int64_t q0 = block * block_len, q1 = std::min(d.queries, q0 + block_len);
      for (int64_t q = q0; q < q1; ++q) {
        T* o = out + ((b * d.queries + q) * d.heads + h) * d.dims;
        std::fill(o, o + d.dims, T(0));
      }
      for (int64_t l = 0; l < d.levels; ++l) {
        const Level lv{levels[l].h, levels[l].w, 0};  // keys relative to the buffer
        gather_rows(value + (b * d.keys + levels[l].start) * key_stride + h * d.dims, key_stride,
                    lv.h * lv.w, d.dims, buf.row(0));
        for (int64_t q = q0; q < q1; ++q) {
          const int64_t bqh = (b * d.queries + q) * d.heads + h;
          T* __restrict__ o = out + bqh * d.dims;
          for (int64_t p = 0; p < d.points; ++p) {
            const int64_t s = (bqh * d.levels + l) * d.points + p;
            Corners<T> c;
            if (!corners_of(loc[2 * s], loc[2 * s + 1], lv, c)) continue;
            const T w = attn[s];
            const T* __restrict__ v0 = buf.row_or(c.key[0], buf.zero_row);
            const T* __restrict__ v1 = buf.row_or(c.key[1], buf.zero_row);
            const T* __restrict__ v2 = buf.row_or(c.key[2], buf.zero_row);
            const T* __restrict__ v3 = buf.row_or(c.key[3], buf.zero_row);
            for (int64_t ch = 0; ch < d.dims; ++ch) {
              o[ch] += w * (((c.weight[0] * v0[ch] + c.weight[1] * v1[ch]) +
                             c.weight[2] * v2[ch]) + c.weight[3] * v3[ch]);
            }
          }
        }
      }
    }
  });
}

template <typename T>
void backward_kernel(const T* __restrict__ grad_out, const T* __restrict__ value,
                     const std::vector<Level>& levels, const T* __restrict__ loc,
                     const T* __restrict__ attn, T* __restrict__ grad_value,
                     T* __restrict__ grad_loc, T* __restrict__ grad_attn, const Dims& d) {
  const int64_t key_stride = d.heads * d.dims;
  const int64_t max_rows = max_level_keys(levels);
  at::parallel_for(0, d.bs * d.heads * d.levels, 1, [&](int64_t begin, int64_t end) {
    LevelBuffer<T> vbuf(thread_storage<T>(0), max_rows, d.dims);
    LevelBuffer<T> gbuf(thread_storage<T>(1), max_rows, d.dims);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t l = task % d.levels, h = task / d.levels % d.heads;
      const int64_t b = task / (d.levels * d.heads);
      const Level lv{levels[l].h, levels[l].w, 0};  // keys relative to the buffers
      const int64_t rows = lv.h * lv.w;
      const int64_t offset = (b * d.keys + levels[l].start) * key_stride + h * d.dims;
      gather_rows(value + offset, key_stride, rows, d.dims, vbuf.row(0));
      std::fill(gbuf.row(0), gbuf.row(rows), T(0));
      for (int64_t q = 0; q < d.queries; ++q) {
        const int64_t bqh = (b * d.queries + q) * d.heads + h;
        const T* __restrict__ g = grad_out + bqh * d.dims;
        for (int64_t p = 0; p < d.points; ++p) {
          const int64_t s = (bqh * d.levels + l) * d.points + p;
          Corners<T> c;
          if (!corners_of(loc[2 * s], loc[2 * s + 1], lv, c)) {
            grad_attn[s] = grad_loc[2 * s] = grad_loc[2 * s + 1] = T(0);
            continue;
          }
          const T w = attn[s];
          T gv[4];  // g . v_corner (0 outside the map: the zero row)
          for (int k = 0; k < 4; ++k) {
            gv[k] = dot(g, vbuf.row_or(c.key[k], vbuf.zero_row), d.dims);
          }
          grad_attn[s] = ((c.weight[0] * gv[0] + c.weight[1] * gv[1]) + c.weight[2] * gv[2]) +
                         c.weight[3] * gv[3];
          // d(sample)/dx = hy * (ne - nw) + ly * (se - sw); dx/dloc_x = W (and alike for y)
          grad_loc[2 * s] =
              w * static_cast<T>(lv.w) * (c.hy * (gv[1] - gv[0]) + c.ly * (gv[3] - gv[2]));
          grad_loc[2 * s + 1] =
              w * static_cast<T>(lv.h) * (c.hx * (gv[2] - gv[0]) + c.lx * (gv[3] - gv[1]));
          for (int k = 0; k < 4; ++k) {
            T* __restrict__ dst = gbuf.row_or(c.key[k], gbuf.scratch_row);
            const T coef = w * c.weight[k];
            for (int64_t ch = 0; ch < d.dims; ++ch) dst[ch] += coef * g[ch];
          }
        }
      }
      // every element of grad_value is written once, here
      scatter_rows(gbuf.row(0), rows, d.dims, grad_value + offset, key_stride);
    }
  });
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
  Tensor grad_value = at::empty_like(value);  // the levels partition the keys
  Tensor grad_loc = at::empty_like(sampling_locations);
  Tensor grad_attn = at::empty_like(attention_weights);
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_bwd_cpu", [&] {
    backward_kernel<scalar_t>(grad_output.data_ptr<scalar_t>(), value.data_ptr<scalar_t>(),
                              levels, sampling_locations.data_ptr<scalar_t>(),
                              attention_weights.data_ptr<scalar_t>(),
                              grad_value.data_ptr<scalar_t>(), grad_loc.data_ptr<scalar_t>(),
                              grad_attn.data_ptr<scalar_t>(), d);
  });
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace

MMEXT_REGISTER_IMPL(ms_deform_attn_fwd, CPU, ms_deform_attn_fwd_cpu)
MMEXT_REGISTER_IMPL(ms_deform_attn_bwd, CPU, ms_deform_attn_bwd_cpu)
