// Launchers of the fused LayerNorm CUDA kernels (common/cuda/layer_norm_kernel.cuh).
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include <optional>
#include <vector>

#include "cuda/layer_norm_kernel.cuh"
#include "pytorch_cpp_helper.hpp"
#include "layer_norm_dispatch.hpp"

using at::Tensor;

namespace {

namespace ln = mmext::layer_norm;

bool given(const OptTensor& t) { return t.has_value() && t->defined(); }

template <typename T>
T* ptr(const OptTensor& t) {
  return given(t) ? t->data_ptr<T>() : nullptr;
}

// 16-byte accesses need every row start and every pointer aligned to 16 bytes.
template <typename T, int VEC>
bool can_vectorise(int64_t n, std::initializer_list<const void*> ptrs) {
  if (n % VEC != 0) return false;
  for (const void* p : ptrs) {
    if (p != nullptr && reinterpret_cast<uintptr_t>(p) % (sizeof(T) * VEC) != 0) return false;
  }
  return true;
}

int threads_for(int64_t n, int vec) {
  int threads = 32;
  while (threads < 1024 && int64_t(threads) * vec * 4 < n) threads *= 2;  // ~4 accesses each
  return threads;
}

std::vector<Tensor> layer_norm_fwd_cuda(const Tensor& x, const OptTensor& residual,
                                        const OptTensor& pre_bias, const OptTensor& weight,
                                        const OptTensor& bias, double eps, bool keep_prenorm) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t m = x.size(0), n = x.size(1);
  const auto stat_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  Tensor y = at::empty_like(x);
  Tensor mean = at::empty({m}, x.options().dtype(stat_type));
  Tensor rstd = at::empty({m}, x.options().dtype(stat_type));
  const bool add = given(residual) || given(pre_bias);
  Tensor prenorm;
  if (add) {
    prenorm = at::empty_like(x);
  } else if (keep_prenorm) {
    prenorm = x.clone();
  }
  if (m == 0) return {y, mean, rstd, prenorm};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "layer_norm_fwd_cuda", [&] {
    using A = typename ln::Acc<scalar_t>::type;
    constexpr int VEC = 16 / sizeof(scalar_t);
    const bool vec = can_vectorise<scalar_t, VEC>(
        n, {x.data_ptr(), ptr<scalar_t>(residual), ptr<scalar_t>(pre_bias), ptr<scalar_t>(weight),
            ptr<scalar_t>(bias), y.data_ptr(), add ? prenorm.data_ptr() : nullptr});
    ln::forward_kernel<scalar_t, VEC><<<m, threads_for(n, vec ? VEC : 1), 0, stream>>>(
        x.data_ptr<scalar_t>(), ptr<scalar_t>(residual), ptr<scalar_t>(pre_bias),
        ptr<scalar_t>(weight), ptr<scalar_t>(bias), y.data_ptr<scalar_t>(),
        add ? prenorm.data_ptr<scalar_t>() : nullptr, mean.data_ptr<A>(), rstd.data_ptr<A>(), n,
        eps, vec);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {y, mean, rstd, prenorm};
}

std::vector<Tensor> layer_norm_bwd_cuda(const Tensor& dy, const Tensor& s, const Tensor& mean,
                                        const Tensor& rstd, const OptTensor& weight,
                                        const OptTensor& dprenorm, bool param_grads) {
  const c10::cuda::CUDAGuard guard(s.device());
  const int64_t m = s.size(0), n = s.size(1);
  Tensor dx = at::empty_like(s);
  Tensor dweight, dbias;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "layer_norm_bwd_cuda", [&] {
    using A = typename ln::Acc<scalar_t>::type;
    constexpr int VEC = 16 / sizeof(scalar_t);
    if (m > 0) {
      const bool vec = can_vectorise<scalar_t, VEC>(
          n, {dy.data_ptr(), s.data_ptr(), ptr<scalar_t>(weight), ptr<scalar_t>(dprenorm),
              dx.data_ptr()});
      ln::backward_input_kernel<scalar_t, VEC><<<m, threads_for(n, vec ? VEC : 1), 0, stream>>>(
          dy.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), mean.data_ptr<A>(),
          rstd.data_ptr<A>(), ptr<scalar_t>(weight), ptr<scalar_t>(dprenorm),
          dx.data_ptr<scalar_t>(), n, vec);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (param_grads) {
      Tensor dw = at::zeros({n}, mean.options());
      Tensor db = at::zeros({n}, mean.options());
      if (m > 0 && n > 0) {
        const dim3 block(32, 16);
        const dim3 grid(static_cast<unsigned>((n + 31) / 32));
        const size_t shared = 2 * block.x * block.y * sizeof(A);
        ln::backward_params_kernel<scalar_t><<<grid, block, shared, stream>>>(
            dy.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), mean.data_ptr<A>(),
            rstd.data_ptr<A>(), dw.data_ptr<A>(), db.data_ptr<A>(), m, n);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      dweight = dw.to(s.scalar_type());
      dbias = db.to(s.scalar_type());
    }
  });
  return {dx, dweight, dbias};
}

}  // namespace

MMEXT_REGISTER_IMPL(layer_norm_fwd, CUDA, layer_norm_fwd_cuda)
MMEXT_REGISTER_IMPL(layer_norm_bwd, CUDA, layer_norm_bwd_cuda)
