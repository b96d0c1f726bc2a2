// CPU kernels of multi-scale deformable attention (see ../ms_deform_attn.cpp for the maths).
//
// Forward: (image, query) rows in parallel; per head, level and point one bilinear sample of the
// head's channel vector (value is [bs, keys, heads, head_dims], so a corner is head_dims
// contiguous numbers and the channel loops vectorise).
//
// Backward: grad_sampling_locations and grad_attention_weights belong to one sample each, but
// grad_value is a scatter.  Tasks are (image, head, level) triples: the keys a triple scatters
// into (its level's map of its head) are disjoint from every other triple's, and every sample
// belongs to exactly one triple, so no two tasks write the same element and each task walks
// its queries in order.  No atomics, no per-thread buffers, and the result is bit-identical for
// any number of threads.  Corners outside the map read a zero row and write a scratch row, so
// the channel loops have no branches.
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

std::vector<Level> read_levels(const Tensor& spatial_shapes, const Tensor& level_start_index) {
  const int64_t* hw = spatial_shapes.data_ptr<int64_t>();
  const int64_t* start = level_start_index.data_ptr<int64_t>();
  std::vector<Level> levels(spatial_shapes.size(0));
  for (size_t l = 0; l < levels.size(); ++l) levels[l] = {hw[2 * l], hw[2 * l + 1], start[l]};
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

template <typename T>
void forward_kernel(const T* __restrict__ value, const std::vector<Level>& levels,
                    const T* __restrict__ loc, const T* __restrict__ attn, T* __restrict__ out,
                    const Dims& d) {
  const int64_t key_stride = d.heads * d.dims;
  const int64_t samples = d.levels * d.points;  // per (image, query, head)
  // ~4k samples per task
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(d.heads * samples, 1));
  at::parallel_for(0, d.bs * d.queries, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> zeros(d.dims, T(0));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / d.queries;
      for (int64_t h = 0; h < d.heads; ++h) {
        T* __restrict__ o = out + (row * d.heads + h) * d.dims;
        std::fill(o, o + d.dims, T(0));
        const T* v_bh = value + b * d.keys * key_stride + h * d.dims;
        const int64_t s0 = (row * d.heads + h) * samples;
        for (int64_t l = 0; l < d.levels; ++l) {
          for (int64_t p = 0; p < d.points; ++p) {
            const int64_t s = s0 + l * d.points + p;
            Corners<T> c;
            if (!corners_of(loc[2 * s], loc[2 * s + 1], levels[l], c)) continue;
            const T* v[4];
            for (int k = 0; k < 4; ++k) {
              v[k] = c.key[k] >= 0 ? v_bh + c.key[k] * key_stride : zeros.data();
            }
            const T w = attn[s];
            const T* __restrict__ v0 = v[0];
            const T* __restrict__ v1 = v[1];
            const T* __restrict__ v2 = v[2];
            const T* __restrict__ v3 = v[3];
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
  at::parallel_for(0, d.bs * d.heads * d.levels, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> zeros(d.dims, T(0)), scratch(d.dims);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t l = task % d.levels, h = task / d.levels % d.heads;
      const int64_t b = task / (d.levels * d.heads);
      const Level& lv = levels[l];
      const T* v_bh = value + b * d.keys * key_stride + h * d.dims;
      T* gv_bh = grad_value + b * d.keys * key_stride + h * d.dims;
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
          T gv[4];  // g . v_corner
          for (int k = 0; k < 4; ++k) {
            gv[k] = c.key[k] >= 0 ? dot(g, v_bh + c.key[k] * key_stride, d.dims) : T(0);
          }
          grad_attn[s] = ((c.weight[0] * gv[0] + c.weight[1] * gv[1]) + c.weight[2] * gv[2]) +
                         c.weight[3] * gv[3];
          // d(sample)/dx = hy * (ne - nw) + ly * (se - sw); dx/dloc_x = W (and alike for y)
          grad_loc[2 * s] =
              w * static_cast<T>(lv.w) * (c.hy * (gv[1] - gv[0]) + c.ly * (gv[3] - gv[2]));
          grad_loc[2 * s + 1] =
              w * static_cast<T>(lv.h) * (c.hx * (gv[2] - gv[0]) + c.lx * (gv[3] - gv[1]));
          for (int k = 0; k < 4; ++k) {
            T* __restrict__ dst = c.key[k] >= 0 ? gv_bh + c.key[k] * key_stride : scratch.data();
            const T coef = w * c.weight[k];
            for (int64_t ch = 0; ch < d.dims; ++ch) dst[ch] += coef * g[ch];
          }
        }
      }
    }
  });
}

Tensor ms_deform_attn_fwd_cpu(const Tensor& value, const Tensor& spatial_shapes,
                              const Tensor& level_start_index, const Tensor& sampling_locations,
                              const Tensor& attention_weights) {
  const Dims d = dims_of(value, sampling_locations);
  const std::vector<Level> levels = read_levels(spatial_shapes, level_start_index);
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
  const std::vector<Level> levels = read_levels(spatial_shapes, level_start_index);
  Tensor grad_value = at::zeros_like(value);
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
