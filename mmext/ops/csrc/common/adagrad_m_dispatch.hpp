// Dispatchers of the in-place AdagradM updates (csrc/pytorch/adagrad_m.cpp).
#pragma once
#include <optional>

#include "pytorch_device_registry.hpp"

// (param, acc, vel, indices, values, lr, momentum, eps)
using AdagradMRowsFn = void(at::Tensor&, at::Tensor&, const std::optional<at::Tensor>&,
                            const at::Tensor&, const at::Tensor&, double, double, double);
// (param, acc, vel, grad, lr, momentum, eps)
using AdagradMDenseFn = void(at::Tensor&, at::Tensor&, const std::optional<at::Tensor>&,
                             const at::Tensor&, double, double, double);

MMEXT_DECLARE_DISPATCH(adagrad_m_rows, AdagradMRowsFn)
MMEXT_DECLARE_DISPATCH(adagrad_m_dense, AdagradMDenseFn)
