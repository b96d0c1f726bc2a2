// CPU kernels of the fused LayerNorm, parallel over rows.
//
// Row statistics are computed and kept (for backward) in double whatever the input type, and
// x - mean is taken in double: with |mean| >> std a float32 mean alone is off by half a float32
// ulp of the mean, which can be a large fraction of the std.  The rest runs in the op-math type
// (float for half/bfloat16/float, double for double), and the pre-norm sum
// is rounded to the input dtype before it is normalised, exactly as the unfused
// `layer_norm(x + bias + residual)` would see it.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "pytorch_cpp_helper.hpp"
#include "layer_norm_dispatch.hpp"

using at::Tensor;

namespace {

template <typename T>
const T* ptr_or_null(const OptTensor& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}

bool given(const OptTensor& t) { return t.has_value() && t->defined(); }

template <typename T>
void forward_kernel(const T* x, const T* residual, const T* pre_bias, const T* weight,
                    const T* bias, T* y, T* prenorm, double* mean_out, double* rstd_out,
                    int64_t M, int64_t N, double eps) {
  using acc_t = at::opmath_type<T>;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(N, 1));
  at::parallel_for(0, M, grain, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      const T* in = x + m * N;
      if (prenorm != nullptr) {  // s = x + pre_bias + residual, rounded to T like unfused code
        T* s = prenorm + m * N;
        const T* r = residual != nullptr ? residual + m * N : nullptr;
        for (int64_t n = 0; n < N; ++n) {
          acc_t v = static_cast<acc_t>(in[n]);
          if (pre_bias != nullptr) {
            v = static_cast<acc_t>(static_cast<T>(v + static_cast<acc_t>(pre_bias[n])));
          }
          if (r != nullptr) v += static_cast<acc_t>(r[n]);
          s[n] = static_cast<T>(v);
        }
        in = s;
      }
      double sum = 0.;
      for (int64_t n = 0; n < N; ++n) sum += static_cast<double>(in[n]);
      const double mu = N > 0 ? sum / N : 0.;
      double sq = 0.;
      for (int64_t n = 0; n < N; ++n) {
        const double d = static_cast<double>(in[n]) - mu;
        sq += d * d;
      }
      const double var = N > 0 ? sq / N : 0.;
      const double rstd = 1. / std::sqrt(var + eps);
      mean_out[m] = mu;
      rstd_out[m] = rstd;
      T* out = y + m * N;
      for (int64_t n = 0; n < N; ++n) {
        acc_t v = static_cast<acc_t>((static_cast<double>(in[n]) - mu) * rstd);
        if (weight != nullptr) v *= static_cast<acc_t>(weight[n]);
        if (bias != nullptr) v += static_cast<acc_t>(bias[n]);
        out[n] = static_cast<T>(v);
      }
    }
  });
}

template <typename T>
void backward_kernel(const T* dy, const T* s, const double* mean, const double* rstd,
                     const T* weight, const T* dprenorm, T* dx,
                     at::opmath_type<T>* dweight_parts, at::opmath_type<T>* dbias_parts,
                     int64_t M, int64_t N, int64_t num_chunks) {
  using acc_t = at::opmath_type<T>;
  const int64_t rows_per_chunk = (M + num_chunks - 1) / num_chunks;
  // Each chunk of rows owns one partial row of dweight/dbias: no atomics, deterministic sums.
  at::parallel_for(0, num_chunks, 1, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      acc_t* dw = dweight_parts != nullptr ? dweight_parts + c * N : nullptr;
      acc_t* db = dbias_parts != nullptr ? dbias_parts + c * N : nullptr;
      const int64_t m_end = std::min(M, (c + 1) * rows_per_chunk);
      for (int64_t m = c * rows_per_chunk; m < m_end; ++m) {
        const T* g_row = dy + m * N;
        const T* s_row = s + m * N;
        const double mu = mean[m], r = rstd[m];
        // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight.
        acc_t sum_g = 0, sum_gx = 0;
        for (int64_t n = 0; n < N; ++n) {
          const acc_t xhat = static_cast<acc_t>((static_cast<double>(s_row[n]) - mu) * r);
          acc_t g = static_cast<acc_t>(g_row[n]);
          if (dw != nullptr) {
            dw[n] += g * xhat;
            db[n] += g;
          }
          if (weight != nullptr) g *= static_cast<acc_t>(weight[n]);
          sum_g += g;
          sum_gx += g * xhat;
        }
        const acc_t mean_g = sum_g / N, mean_gx = sum_gx / N;
        T* out = dx + m * N;
        const T* extra = dprenorm != nullptr ? dprenorm + m * N : nullptr;
        for (int64_t n = 0; n < N; ++n) {
          const acc_t xhat = static_cast<acc_t>((static_cast<double>(s_row[n]) - mu) * r);
          acc_t g = static_cast<acc_t>(g_row[n]);
          if (weight != nullptr) g *= static_cast<acc_t>(weight[n]);
          acc_t v = (g - mean_g - xhat * mean_gx) * static_cast<acc_t>(r);
          if (extra != nullptr) v += static_cast<acc_t>(extra[n]);
          out[n] = static_cast<T>(v);
        }
      }
    }
  });
}

std::vector<Tensor> layer_norm_fwd_cpu(const Tensor& x, const OptTensor& residual,
                                       const OptTensor& pre_bias, const OptTensor& weight,
                                       const OptTensor& bias, double eps, bool keep_prenorm) {
  const int64_t M = x.size(0), N = x.size(1);
  Tensor y = at::empty_like(x);
  Tensor mean = at::empty({M}, x.options().dtype(at::kDouble));
  Tensor rstd = at::empty({M}, x.options().dtype(at::kDouble));
  Tensor prenorm;
  if (keep_prenorm || given(residual) || given(pre_bias)) prenorm = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "layer_norm_fwd_cpu", [&] {
    if (prenorm.defined() && !given(residual) && !given(pre_bias)) prenorm.copy_(x);
    const bool add = given(residual) || given(pre_bias);
    forward_kernel<scalar_t>(x.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(residual),
                             ptr_or_null<scalar_t>(pre_bias), ptr_or_null<scalar_t>(weight),
                             ptr_or_null<scalar_t>(bias), y.data_ptr<scalar_t>(),
                             add ? prenorm.data_ptr<scalar_t>() : nullptr,
                             mean.data_ptr<double>(), rstd.data_ptr<double>(), M, N, eps);
  });
  return {y, mean, rstd, prenorm};
}

std::vector<Tensor> layer_norm_bwd_cpu(const Tensor& dy, const Tensor& s, const Tensor& mean,
                                       const Tensor& rstd, const OptTensor& weight,
                                       const OptTensor& dprenorm) {
  const int64_t M = s.size(0), N = s.size(1);
  Tensor dx = at::empty_like(s);
  Tensor dweight, dbias;
  const int64_t num_chunks =
      std::max<int64_t>(1, std::min<int64_t>(M, 4 * at::get_num_threads()));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "layer_norm_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    Tensor parts_w, parts_b;
    if (given(weight)) {
      const auto acc_type = s.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
      parts_w = at::zeros({num_chunks, N}, s.options().dtype(acc_type));
      parts_b = at::zeros({num_chunks, N}, s.options().dtype(acc_type));
    }
    backward_kernel<scalar_t>(dy.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
                              mean.data_ptr<double>(), rstd.data_ptr<double>(),
                              ptr_or_null<scalar_t>(weight), ptr_or_null<scalar_t>(dprenorm),
                              dx.data_ptr<scalar_t>(),
                              parts_w.defined() ? parts_w.data_ptr<acc_t>() : nullptr,
                              parts_b.defined() ? parts_b.data_ptr<acc_t>() : nullptr, M, N,
                              num_chunks);
    if (parts_w.defined()) {
      dweight = parts_w.sum(0).to(s.scalar_type());
      dbias = parts_b.sum(0).to(s.scalar_type());
    }
  });
  return {dx, dweight, dbias};
}

}  // namespace

MMEXT_REGISTER_IMPL(layer_norm_fwd, CPU, layer_norm_fwd_cpu)
MMEXT_REGISTER_IMPL(layer_norm_bwd, CPU, layer_norm_bwd_cpu)
