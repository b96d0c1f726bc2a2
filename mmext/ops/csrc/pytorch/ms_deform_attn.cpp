// Multi-scale deformable attention (Zhu et al., "Deformable DETR", ICLR 2021, eq. 3): every
// query sums, per head, bilinear samples of the value maps of all levels weighted by its
// attention weights.  Sampling is grid_sample's: bilinear, zero padding, align_corners=False
// (location (x, y) in [0, 1] reads pixel coordinates (x * W - 0.5, y * H - 0.5)).
// Device-independent entry points: argument checks, then dispatch by device.
#include <vector>

#include "ms_deform_attn_dispatch.hpp"
#include "pytorch_cpp_helper.hpp"

using at::Tensor;

MMEXT_DEFINE_DISPATCH(ms_deform_attn_fwd, Tensor(const Tensor&, const Tensor&, const Tensor&,
                                                 const Tensor&, const Tensor&))
MMEXT_DEFINE_DISPATCH(ms_deform_attn_bwd,
                      std::vector<Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                          const Tensor&, const Tensor&, const Tensor&, bool))

namespace {

// Shapes and dtypes.  The values of spatial_shapes/level_start_index are checked by the CPU
// kernel (which reads them on the host anyway) and, for CUDA, by the Python wrapper (reading
// them here would synchronise the stream).
void check_inputs(const Tensor& value, const Tensor& spatial_shapes,
                  const Tensor& level_start_index, const Tensor& sampling_locations,
                  const Tensor& attention_weights) {
  TORCH_CHECK(value.dim() == 4, "value must be [bs, num_keys, num_heads, head_dims], got shape ",
              value.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
              "spatial_shapes must be [num_levels, 2], got shape ", spatial_shapes.sizes());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong &&
                  level_start_index.scalar_type() == at::kLong,
              "spatial_shapes and level_start_index must be int64, got ",
              spatial_shapes.scalar_type(), " and ", level_start_index.scalar_type());
  const int64_t bs = value.size(0), heads = value.size(2), levels = spatial_shapes.size(0);
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == levels,
              "level_start_index must be [num_levels] = [", levels, "], got shape ",
              level_start_index.sizes());
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(0) == bs &&
                  sampling_locations.size(2) == heads && sampling_locations.size(3) == levels &&
                  sampling_locations.size(5) == 2,
              "sampling_locations must be [bs, num_queries, num_heads, num_levels, num_points, "
              "2] = [",
              bs, ", *, ", heads, ", ", levels, ", *, 2], got shape ", sampling_locations.sizes());
  TORCH_CHECK(attention_weights.dim() == 5 &&
                  attention_weights.sizes() == sampling_locations.sizes().slice(0, 5),
              "attention_weights must be [bs, num_queries, num_heads, num_levels, num_points] = ",
              sampling_locations.sizes().slice(0, 5), ", got shape ", attention_weights.sizes());
  MMEXT_CHECK_FLOATING(value);
  MMEXT_CHECK_SAME_DTYPE(value, sampling_locations);
  MMEXT_CHECK_SAME_DTYPE(value, attention_weights);
}

}  // namespace

// value [bs, num_keys, num_heads, head_dims], spatial_shapes [num_levels, 2] (H, W) int64,
// level_start_index [num_levels] int64, sampling_locations [bs, nq, heads, levels, points, 2]
// (x, y) in [0, 1], attention_weights [bs, nq, heads, levels, points].
// Returns [bs, nq, heads * head_dims].
Tensor ms_deform_attn_fwd(const Tensor& value, const Tensor& spatial_shapes,
                          const Tensor& level_start_index, const Tensor& sampling_locations,
                          const Tensor& attention_weights) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  return ms_deform_attn_fwd_dispatch()(value.contiguous(), spatial_shapes.contiguous(),
                                       level_start_index.contiguous(),
                                       sampling_locations.contiguous(),
                                       attention_weights.contiguous());
}

// grad_output [bs, nq, heads * head_dims].  Returns {grad_value, grad_sampling_locations,
// grad_attention_weights} in the shapes of the inputs.  deterministic: on CUDA, accumulate
// grad_value without atomics (slower); the CPU kernel is always deterministic.
std::vector<Tensor> ms_deform_attn_bwd(const Tensor& grad_output, const Tensor& value,
                                       const Tensor& spatial_shapes,
                                       const Tensor& level_start_index,
                                       const Tensor& sampling_locations,
                                       const Tensor& attention_weights, bool deterministic) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == value.size(0) &&
                  grad_output.size(1) == sampling_locations.size(1) &&
                  grad_output.size(2) == value.size(2) * value.size(3),
              "grad_output must be [bs, num_queries, num_heads * head_dims] = [", value.size(0),
              ", ", sampling_locations.size(1), ", ", value.size(2) * value.size(3), "], got shape ",
              grad_output.sizes());
  MMEXT_CHECK_SAME_DTYPE(grad_output, value);
  return ms_deform_attn_bwd_dispatch()(
      grad_output.contiguous(), value.contiguous(), spatial_shapes.contiguous(),
      level_start_index.contiguous(), sampling_locations.contiguous(),
      attention_weights.contiguous(), deterministic);
}
