// Launchers of the multi-scale deformable attention CUDA kernels
// (common/cuda/ms_deform_attn_kernel.cuh).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <vector>

#include "cuda/ms_deform_attn_kernel.cuh"
#include "ms_deform_attn_dispatch.hpp"
#include "pytorch_cpp_helper.hpp"

using at::Tensor;

namespace {

namespace msda = mmext::ms_deform_attn;

constexpr int kThreads = 256;

msda::Dims dims_of(const Tensor& value, const Tensor& sampling_locations) {
  return {value.size(0),
          value.size(1),
          value.size(2),
          value.size(3),
          sampling_locations.size(1),
          sampling_locations.size(3),
          sampling_locations.size(4)};
}

unsigned blocks_for(int64_t threads) {
  return static_cast<unsigned>((threads + kThreads - 1) / kThreads);
}

Tensor ms_deform_attn_fwd_cuda(const Tensor& value, const Tensor& spatial_shapes,
                               const Tensor& level_start_index, const Tensor& sampling_locations,
                               const Tensor& attention_weights) {
  const c10::cuda::CUDAGuard guard(value.device());
  const msda::Dims d = dims_of(value, sampling_locations);
  Tensor out = at::empty({d.bs, d.queries, d.heads * d.dims}, value.options());
  const int64_t warps = d.bs * d.queries * d.heads;
  if (out.numel() == 0) return out;
  if (d.levels * d.points == 0 || d.keys == 0) return out.zero_();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_fwd_cuda", [&] {
        msda::forward_kernel<scalar_t><<<blocks_for(warps * msda::kWarp), kThreads, 0, stream>>>(
            value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
            level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr<scalar_t>(),
            attention_weights.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), d);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

std::vector<Tensor> ms_deform_attn_bwd_cuda(const Tensor& grad_output, const Tensor& value,
                                            const Tensor& spatial_shapes,
                                            const Tensor& level_start_index,
                                            const Tensor& sampling_locations,
                                            const Tensor& attention_weights,
                                            bool deterministic) {
  const c10::cuda::CUDAGuard guard(value.device());
  const msda::Dims d = dims_of(value, sampling_locations);
  // grad_value is accumulated in the compute type (float for the half types).
  const bool half = value.scalar_type() == at::kHalf || value.scalar_type() == at::kBFloat16;
  Tensor grad_value_acc = at::zeros_like(value, value.options().dtype(
                                                    half ? at::kFloat : value.scalar_type()));
  Tensor grad_loc = at::zeros_like(sampling_locations);
  Tensor grad_attn = at::zeros_like(attention_weights);
  const int64_t warps = d.bs * d.queries * d.heads;
  if (warps > 0 && d.levels * d.points > 0 && d.dims > 0 && d.keys > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_bwd_cuda", [&] {
          using A = typename msda::Acc<scalar_t>::type;
          msda::backward_kernel<scalar_t>
              <<<blocks_for(warps * msda::kWarp), kThreads, 0, stream>>>(
                  grad_output.data_ptr<scalar_t>(), value.data_ptr<scalar_t>(),
                  spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
                  sampling_locations.data_ptr<scalar_t>(),
                  attention_weights.data_ptr<scalar_t>(), grad_value_acc.data_ptr<A>(),
                  grad_loc.data_ptr<scalar_t>(), grad_attn.data_ptr<scalar_t>(), d,
                  !deterministic);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          if (deterministic) {
            msda::value_grad_kernel<scalar_t>
                <<<blocks_for(d.bs * d.heads * d.levels * d.dims), kThreads, 0, stream>>>(
                    grad_output.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
                    level_start_index.data_ptr<int64_t>(),
                    sampling_locations.data_ptr<scalar_t>(),
                    attention_weights.data_ptr<scalar_t>(), grad_value_acc.data_ptr<A>(), d);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          }
        });
  }
  Tensor grad_value = half ? grad_value_acc.to(value.scalar_type()) : grad_value_acc;
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace

MMEXT_REGISTER_IMPL(ms_deform_attn_fwd, CUDA, ms_deform_attn_fwd_cuda)
MMEXT_REGISTER_IMPL(ms_deform_attn_bwd, CUDA, ms_deform_attn_bwd_cuda)
