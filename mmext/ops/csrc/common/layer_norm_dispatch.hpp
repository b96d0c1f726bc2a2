// Dispatcher declarations of the fused LayerNorm, shared by the entry point and its backends.
#pragma once
#include <optional>
#include <vector>

#include "pytorch_device_registry.hpp"

using OptTensor = std::optional<at::Tensor>;

// {y, mean, rstd, prenorm} from (x, residual, pre_bias, weight, bias, eps, keep_prenorm).
MMEXT_DECLARE_DISPATCH(layer_norm_fwd,
                       std::vector<at::Tensor>(const at::Tensor&, const OptTensor&,
                                               const OptTensor&, const OptTensor&,
                                               const OptTensor&, double, bool))
// {dx, dweight, dbias} from (dy, s, mean, rstd, weight, dprenorm, param_grads).
MMEXT_DECLARE_DISPATCH(layer_norm_bwd,
                       std::vector<at::Tensor>(const at::Tensor&, const at::Tensor&,
                                               const at::Tensor&, const at::Tensor&,
                                               const OptTensor&, const OptTensor&, bool))
