// Fused LayerNorm (Ba et al., "Layer Normalization", 2016, eq. 4) with the optional
// "add bias + residual" in front, as in FasterTransformer's pre-LN blocks:
//   s = x + pre_bias + residual,  y = (s - mean(s)) / sqrt(var(s) + eps) * weight + bias.
// Device-independent entry points: argument checks, then dispatch by device.
#include <optional>
#include <vector>

#include "pytorch_cpp_helper.hpp"
#include "layer_norm_dispatch.hpp"

using at::Tensor;

MMEXT_DEFINE_DISPATCH(layer_norm_fwd,
                      std::vector<Tensor>(const Tensor&, const OptTensor&, const OptTensor&,
                                          const OptTensor&, const OptTensor&, double, bool))
MMEXT_DEFINE_DISPATCH(layer_norm_bwd,
                      std::vector<Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                          const Tensor&, const OptTensor&, const OptTensor&,
                                          bool))

namespace {

void check_vector(const OptTensor& t, const Tensor& x, const char* name) {
  if (!t.has_value() || !t->defined()) return;
  TORCH_CHECK(t->dim() == 1 && t->size(0) == x.size(1), name, " must have shape [", x.size(1),
              "], got ", t->sizes());
  TORCH_CHECK(t->scalar_type() == x.scalar_type(), name, " must have the input's dtype ",
              x.scalar_type(), ", got ", t->scalar_type());
}

OptTensor contiguous(const OptTensor& t) {
  if (!t.has_value() || !t->defined()) return std::nullopt;
  return t->contiguous();
}

}  // namespace

// x, residual: [M, N]; pre_bias, weight, bias: [N].  Returns {y, mean, rstd, prenorm}: mean and
// rstd [M] (float64 on the CPU; on CUDA float32, float64 for float64 input); prenorm = x + pre_bias + residual in x's
// dtype when keep_prenorm or when residual/pre_bias are given (backward needs it), else an
// undefined tensor.
std::vector<Tensor> layer_norm_fwd(const Tensor& x, const OptTensor& residual,
                                   const OptTensor& pre_bias, const OptTensor& weight,
                                   const OptTensor& bias, double eps, bool keep_prenorm) {
  MMEXT_CHECK_DIM(x, 2);
  MMEXT_CHECK_FLOATING(x);
  TORCH_CHECK(eps >= 0, "eps must be non-negative, got ", eps);
  if (residual.has_value() && residual->defined()) {
    TORCH_CHECK(residual->sizes() == x.sizes(), "residual must have the input's shape ",
                x.sizes(), ", got ", residual->sizes());
    TORCH_CHECK(residual->scalar_type() == x.scalar_type(), "residual must have the input's "
                "dtype ", x.scalar_type(), ", got ", residual->scalar_type());
  }
  check_vector(pre_bias, x, "pre_bias");
  check_vector(weight, x, "weight");
  check_vector(bias, x, "bias");
  return layer_norm_fwd_dispatch()(x.contiguous(), contiguous(residual), contiguous(pre_bias),
                                   contiguous(weight), contiguous(bias), eps, keep_prenorm);
}

// dy: [M, N]; s: the normalised input (prenorm, or x when nothing was added); mean, rstd from
// the forward; dprenorm: gradient arriving at the prenorm output, added to dx.
// Returns {dx, dweight, dbias}; dweight = sum(dy * xhat) and dbias = sum(dy) over rows are
// reduced when param_grads (the caller has a weight or a bias to train), else undefined.
std::vector<Tensor> layer_norm_bwd(const Tensor& dy, const Tensor& s, const Tensor& mean,
                                   const Tensor& rstd, const OptTensor& weight,
                                   const OptTensor& dprenorm, bool param_grads) {
  MMEXT_CHECK_DIM(s, 2);
  TORCH_CHECK(dy.sizes() == s.sizes(), "dy must have the input's shape ", s.sizes(), ", got ",
              dy.sizes());
  MMEXT_CHECK_SAME_DTYPE(dy, s);
  TORCH_CHECK(mean.numel() == s.size(0) && rstd.numel() == s.size(0),
              "mean and rstd need one entry per row");
  check_vector(weight, s, "weight");
  if (dprenorm.has_value() && dprenorm->defined()) {
    TORCH_CHECK(dprenorm->sizes() == s.sizes(), "dprenorm must have the input's shape");
    MMEXT_CHECK_SAME_DTYPE((*dprenorm), s);
  }
  return layer_norm_bwd_dispatch()(dy.contiguous(), s.contiguous(), mean.contiguous(),
                                   rstd.contiguous(), contiguous(weight), contiguous(dprenorm),
                                   param_grads);
}
