// CPU kernels of the pairwise box match costs: one thread-parallel pass over (image, query)
// rows.  The arithmetic follows the torch expressions of mmext's match-cost terms step for step
// (same operations, same order, fp32 stays fp32), so both paths agree to the last bit.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

#include "pytorch_cpp_helper.hpp"
#include "pytorch_device_registry.hpp"

using at::Tensor;

MMEXT_DECLARE_DISPATCH(pairwise_box_l1, Tensor(const Tensor&, const Tensor&, double))
MMEXT_DECLARE_DISPATCH(pairwise_box_iou, Tensor(const Tensor&, const Tensor&, int64_t, double,
                                                double))

namespace {

// Rows of Q per task chosen so that small problems stay on one thread.
int64_t grain_for(int64_t cols) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
}

// gt [B, G, 4] -> [B, 4, G]: per-coordinate rows make the inner loop over G vectorisable.
Tensor coordinate_major(const Tensor& gt) { return gt.transpose(1, 2).contiguous(); }

// NaN-propagating min/max/clamp as torch's (a NaN operand wins), written as the selects that
// compilers turn into vector min/max instructions.
template <typename T>
inline T clamp_min(T x, T lo) { return x < lo ? lo : x; }
template <typename T>
inline T minimum(T a, T b) { return b < a ? b : a; }
template <typename T>
inline T maximum(T a, T b) { return b > a ? b : a; }

template <typename T>
void box_l1_kernel(const T* __restrict__ pred, const T* __restrict__ gt_t, T* __restrict__ out,
                   int64_t B, int64_t Q, int64_t G, T scale) {
  at::parallel_for(0, B * Q, grain_for(G), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const T* p = pred + row * 4;
      const T p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3];
      const T* __restrict__ g0 = gt_t + row / Q * 4 * G;
      const T* __restrict__ g1 = g0 + G;
      const T* __restrict__ g2 = g1 + G;
      const T* __restrict__ g3 = g2 + G;
      T* __restrict__ o = out + row * G;
      for (int64_t j = 0; j < G; ++j) {
        T c = std::abs(p0 - g0[j]);
        c += std::abs(p1 - g1[j]);
        c += std::abs(p2 - g2[j]);
        c += std::abs(p3 - g3[j]);
        o[j] = c * scale;
      }
    }
  });
}

// MODE 0: IoU, 1: IoF (intersection over the prediction's area), 2: GIoU.  A template
// argument, so the inner loop is branch-free and vectorises.
template <int MODE, typename T>
void box_iou_kernel(const T* __restrict__ pred, const T* __restrict__ gt_t, T* __restrict__ out,
                    int64_t B, int64_t Q, int64_t G, T eps, T scale) {
  at::parallel_for(0, B * Q, grain_for(G), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const T px1 = pred[row * 4], py1 = pred[row * 4 + 1];
      const T px2 = pred[row * 4 + 2], py2 = pred[row * 4 + 3];
      const T pw = px2 - px1, ph = py2 - py1, parea = pw * ph;
      const T* __restrict__ gx1 = gt_t + row / Q * 4 * G;
      const T* __restrict__ gy1 = gx1 + G;
      const T* __restrict__ gx2 = gy1 + G;
      const T* __restrict__ gy2 = gx2 + G;
      T* __restrict__ o = out + row * G;
      for (int64_t j = 0; j < G; ++j) {
        const T iw = minimum(px2, gx2[j]) - maximum(px1, gx1[j]);  // unclamped overlap
        const T ih = minimum(py2, gy2[j]) - maximum(py1, gy1[j]);
        const T inter = clamp_min(iw, T(0)) * clamp_min(ih, T(0));
        T value;
        if constexpr (MODE == 1) {
          value = inter / clamp_min(parea, eps);
        } else {
          const T gw = gx2[j] - gx1[j], gh = gy2[j] - gy1[j];
          const T uni = clamp_min((parea + gw * gh) - inter, eps);
          value = inter / uni;
          if constexpr (MODE == 2) {
            // Enclosing box from max(a2, b2) - min(a1, b1) = w_a + w_b - overlap (exact in reals).
            const T ew = (pw + gw) - iw, eh = (ph + gh) - ih;
            const T enclose = clamp_min(clamp_min(ew, T(0)) * clamp_min(eh, T(0)), eps);
            value = value - (enclose - uni) / enclose;
          }
        }
        o[j] = value * scale;
      }
    }
  });
}

Tensor pairwise_box_l1_cpu(const Tensor& pred, const Tensor& gt, double scale) {
  const int64_t B = pred.size(0), Q = pred.size(1), G = gt.size(1);
  Tensor out = at::empty({B, Q, G}, pred.options());
  const Tensor gt_t = coordinate_major(gt);
  AT_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "pairwise_box_l1_cpu", [&] {
    box_l1_kernel<scalar_t>(pred.data_ptr<scalar_t>(), gt_t.data_ptr<scalar_t>(),
                            out.data_ptr<scalar_t>(), B, Q, G, static_cast<scalar_t>(scale));
  });
  return out;
}

Tensor pairwise_box_iou_cpu(const Tensor& pred, const Tensor& gt, int64_t mode, double eps,
                            double scale) {
  const int64_t B = pred.size(0), Q = pred.size(1), G = gt.size(1);
  Tensor out = at::empty({B, Q, G}, pred.options());
  const Tensor gt_t = coordinate_major(gt);
  AT_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "pairwise_box_iou_cpu", [&] {
    const auto* p = pred.data_ptr<scalar_t>();
    const auto* g = gt_t.data_ptr<scalar_t>();
    auto* o = out.data_ptr<scalar_t>();
    const auto e = static_cast<scalar_t>(eps), k = static_cast<scalar_t>(scale);
    if (mode == 0) {
      box_iou_kernel<0>(p, g, o, B, Q, G, e, k);
    } else if (mode == 1) {
      box_iou_kernel<1>(p, g, o, B, Q, G, e, k);
    } else {
      box_iou_kernel<2>(p, g, o, B, Q, G, e, k);
    }
  });
  return out;
}

}  // namespace

MMEXT_REGISTER_IMPL(pairwise_box_l1, CPU, pairwise_box_l1_cpu)
MMEXT_REGISTER_IMPL(pairwise_box_iou, CPU, pairwise_box_iou_cpu)
