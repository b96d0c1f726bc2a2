// CPU kernels of the in-place AdagradM updates (see ../adagrad_m.cpp for the update rule).
// The torch version of a row-sparse step (coalesce, index_select, index_copy_, sqrt, divide,
// index_add_) makes seven passes and as many allocations for a few hundred rows of a hundred
// floats; here the gradient rows are grouped by a sort of their indices and every touched row
// is updated in one pass.  The arithmetic is torch's, operation for operation, so results
// equal the torch path's to rounding (the order of summing repeated rows; torch's vectorised
// kernels may fuse a multiply-add, these are built without FMA).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "adagrad_m_dispatch.hpp"

using at::Tensor;
using OptTensor = std::optional<Tensor>;

namespace {

// One contiguous run of n elements with gradient g.  The loops vectorise (setup.py compiles with
// -fno-math-errno, without which GCC keeps square roots scalar); on x86-64 the run functions
// below are also cloned for AVX2 (without FMA: the arithmetic stays torch's), picked at load
// time by the CPU.
template <typename T>
inline void update_run(T* __restrict p, T* __restrict a, T* __restrict v, const T* __restrict g,
                       int64_t n, T lr, T mu, T eps) {
  if (v != nullptr) {
    for (int64_t k = 0; k < n; ++k) {
      const T acc = a[k] + g[k] * g[k];
      a[k] = acc;
      const T vel = v[k] * mu - lr * (g[k] / std::sqrt(acc + eps));
      v[k] = vel;
      p[k] = p[k] + vel;
    }
  } else {
    const T neg_lr = -lr;
    for (int64_t k = 0; k < n; ++k) {
      const T acc = a[k] + g[k] * g[k];
      a[k] = acc;
      p[k] = p[k] + neg_lr * (g[k] / std::sqrt(acc + eps));
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MMEXT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MMEXT_CLONES
#endif

MMEXT_CLONES void run(float* p, float* a, float* v, const float* g, int64_t n, float lr, float mu,
                      float eps) {
  update_run<float>(p, a, v, g, n, lr, mu, eps);
}

MMEXT_CLONES void run(double* p, double* a, double* v, const double* g, int64_t n, double lr,
                      double mu, double eps) {
  update_run<double>(p, a, v, g, n, lr, mu, eps);
}

template <typename T>
void rows_kernel(T* p, T* a, T* v, const int64_t* idx, const T* vals, int64_t nnz, int64_t N,
                 int64_t D, T lr, T mu, T eps) {
  for (int64_t i = 0; i < nnz; ++i) {
    TORCH_CHECK(idx[i] >= 0 && idx[i] < N, "adagrad_m_rows: index ", idx[i], " at position ", i,
                " is out of range for a parameter of ", N, " rows");
  }
  // Positions grouped by row, repeats in their original order.
  std::vector<int64_t> order(nnz);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [idx](int64_t x, int64_t y) { return idx[x] < idx[y]; });
  std::vector<int64_t> starts;
  starts.reserve(nnz + 1);
  for (int64_t i = 0; i < nnz; ++i) {
    if (i == 0 || idx[order[i]] != idx[order[i - 1]]) starts.push_back(i);
  }
  starts.push_back(nnz);
  const int64_t groups = static_cast<int64_t>(starts.size()) - 1;
  // Distinct rows: each group is written by one thread.
  at::parallel_for(0, groups, std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1)),
                   [&](int64_t begin, int64_t end) {
    std::vector<T> sum(D);
    for (int64_t gi = begin; gi < end; ++gi) {
      const int64_t first = starts[gi], last = starts[gi + 1];
      const T* g = vals + order[first] * D;
      if (last - first > 1) {  // a repeated row: its gradient is the sum of its rows
        std::copy(g, g + D, sum.begin());
        for (int64_t j = first + 1; j < last; ++j) {
          const T* r = vals + order[j] * D;
          for (int64_t k = 0; k < D; ++k) sum[k] += r[k];
        }
        g = sum.data();
      }
      const int64_t off = idx[order[first]] * D;
      run(p + off, a + off, v == nullptr ? nullptr : v + off, g, D, lr, mu, eps);
    }
  });
}

void adagrad_m_rows_cpu(Tensor& param, Tensor& acc, const OptTensor& vel, const Tensor& indices,
                        const Tensor& values, double lr, double momentum, double eps) {
  AT_DISPATCH_FLOATING_TYPES(param.scalar_type(), "adagrad_m_rows_cpu", [&] {
    rows_kernel<scalar_t>(param.data_ptr<scalar_t>(), acc.data_ptr<scalar_t>(),
                          vel.has_value() ? vel->data_ptr<scalar_t>() : nullptr,
                          indices.data_ptr<int64_t>(), values.data_ptr<scalar_t>(),
                          indices.numel(), param.size(0), param.size(1),
                          static_cast<scalar_t>(lr), static_cast<scalar_t>(momentum),
                          static_cast<scalar_t>(eps));
  });
}

void adagrad_m_dense_cpu(Tensor& param, Tensor& acc, const OptTensor& vel, const Tensor& grad,
                         double lr, double momentum, double eps) {
  AT_DISPATCH_FLOATING_TYPES(param.scalar_type(), "adagrad_m_dense_cpu", [&] {
    scalar_t* p = param.data_ptr<scalar_t>();
    scalar_t* a = acc.data_ptr<scalar_t>();
    scalar_t* v = vel.has_value() ? vel->data_ptr<scalar_t>() : nullptr;
    const scalar_t* g = grad.data_ptr<scalar_t>();
    at::parallel_for(0, param.numel(), 32768, [&](int64_t begin, int64_t end) {
      run(p + begin, a + begin, v == nullptr ? nullptr : v + begin, g + begin, end - begin,
          static_cast<scalar_t>(lr), static_cast<scalar_t>(momentum),
          static_cast<scalar_t>(eps));
    });
  });
}

}  // namespace

MMEXT_REGISTER_IMPL(adagrad_m_rows, CPU, adagrad_m_rows_cpu)
MMEXT_REGISTER_IMPL(adagrad_m_dense, CPU, adagrad_m_dense_cpu)
