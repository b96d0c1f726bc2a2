// In-place AdagradM updates (Adagrad, Duchi et al. 2011, with heavy-ball momentum on the
// Adagrad-scaled step; the optimiser of the official GRU4Rec code): the device-independent
// entry points.  Per element, with gradient g:
//   a <- a + g*g;   s = g / sqrt(a + eps);   v <- mu*v - lr*s, p <- p + v   (mu > 0)
//                                            p <- p - lr*s                  (mu = 0)
// adagrad_m_rows applies a row-sparse gradient (indices may repeat: their rows are summed
// first, as coalescing would) to those rows only; adagrad_m_dense applies a dense one.
#include "adagrad_m_dispatch.hpp"
#include "pytorch_cpp_helper.hpp"

using at::Tensor;
using OptTensor = std::optional<Tensor>;

MMEXT_DEFINE_DISPATCH(adagrad_m_rows, AdagradMRowsFn)
MMEXT_DEFINE_DISPATCH(adagrad_m_dense, AdagradMDenseFn)

// The kernels write through raw pointers: count the writes as in-place ops do, so autograd
// still refuses a backward through a tensor saved before the update.
static void bump_versions(Tensor& param, Tensor& acc, const OptTensor& vel) {
  param.unsafeGetTensorImpl()->bump_version();
  acc.unsafeGetTensorImpl()->bump_version();
  if (vel.has_value()) vel->unsafeGetTensorImpl()->bump_version();
}

static void check_state(const Tensor& param, const Tensor& acc, const OptTensor& vel,
                        double momentum) {
  MMEXT_CHECK_FLOATING(param);
  MMEXT_CHECK_SAME_DTYPE(param, acc);
  TORCH_CHECK(param.is_contiguous() && acc.is_contiguous(),
              "param and acc must be contiguous (they are updated in place)");
  TORCH_CHECK(acc.sizes() == param.sizes(), "acc must have param's shape ", param.sizes(),
              ", got ", acc.sizes());
  TORCH_CHECK(vel.has_value() == (momentum > 0), "vel must be given exactly when momentum > 0");
  if (vel.has_value()) {
    MMEXT_CHECK_SAME_DTYPE(param, (*vel));
    TORCH_CHECK(vel->is_contiguous() && vel->sizes() == param.sizes(),
                "vel must be contiguous with param's shape ", param.sizes(), ", got ",
                vel->sizes());
  }
}

// Rows `indices` [nnz] (int64, repeats allowed) of a 2-D param [N, D] with gradient rows
// `values` [nnz, D].
void adagrad_m_rows(Tensor& param, Tensor& acc, const OptTensor& vel, const Tensor& indices,
                    const Tensor& values, double lr, double momentum, double eps) {
  check_state(param, acc, vel, momentum);
  MMEXT_CHECK_DIM(param, 2);
  MMEXT_CHECK_DIM(indices, 1);
  MMEXT_CHECK_DIM(values, 2);
  MMEXT_CHECK_SAME_DTYPE(param, values);
  TORCH_CHECK(indices.scalar_type() == at::kLong, "indices must be int64, got ",
              indices.scalar_type());
  TORCH_CHECK(values.size(0) == indices.size(0) && values.size(1) == param.size(1),
              "values must be [len(indices), D] = [", indices.size(0), ", ", param.size(1),
              "], got ", values.sizes());
  adagrad_m_rows_dispatch()(param, acc, vel, indices.contiguous(), values.contiguous(), lr,
                            momentum, eps);
  bump_versions(param, acc, vel);
}

void adagrad_m_dense(Tensor& param, Tensor& acc, const OptTensor& vel, const Tensor& grad,
                     double lr, double momentum, double eps) {
  check_state(param, acc, vel, momentum);
  MMEXT_CHECK_SAME_DTYPE(param, grad);
  TORCH_CHECK(grad.sizes() == param.sizes(), "grad must have param's shape ", param.sizes(),
              ", got ", grad.sizes());
  adagrad_m_dense_dispatch()(param, acc, vel, grad.contiguous(), lr, momentum, eps);
  bump_versions(param, acc, vel);
}
