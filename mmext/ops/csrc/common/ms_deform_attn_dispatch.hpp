// Dispatcher declarations of multi-scale deformable attention, shared by the entry point
// (pytorch/ms_deform_attn.cpp) and its backends (cpu/, cuda/).
#pragma once
#include <vector>

#include "pytorch_device_registry.hpp"

// output [bs, num_queries, num_heads * head_dims] from
// (value, spatial_shapes, level_start_index, sampling_locations, attention_weights).
MMEXT_DECLARE_DISPATCH(ms_deform_attn_fwd,
                       at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                  const at::Tensor&, const at::Tensor&))
// {grad_value, grad_sampling_locations, grad_attention_weights} from
// (grad_output, value, spatial_shapes, level_start_index, sampling_locations,
//  attention_weights, deterministic).
MMEXT_DECLARE_DISPATCH(ms_deform_attn_bwd,
                       std::vector<at::Tensor>(const at::Tensor&, const at::Tensor&,
                                               const at::Tensor&, const at::Tensor&,
                                               const at::Tensor&, const at::Tensor&, bool))
