// Batched linear sum assignment: the device-independent entry point.
#include "pytorch_cpp_helper.hpp"
#include "pytorch_device_registry.hpp"

using at::Tensor;

MMEXT_DEFINE_DISPATCH(batched_linear_sum_assignment, Tensor(const Tensor&, const Tensor&,
                                                             const Tensor&))

// Minimum-cost matching of every image's cost[b, :num_rows[b], :num_cols[b]] block.  Returns
// [B, R] int64: the column matched to each row, -1 for rows left unmatched (when a block has
// more rows than columns) and for padding rows.
Tensor batched_linear_sum_assignment(const Tensor& cost, const Tensor& num_rows,
                                     const Tensor& num_cols) {
  MMEXT_CHECK_DIM(cost, 3);
  MMEXT_CHECK_FLOATING(cost);
  MMEXT_CHECK_DIM(num_rows, 1);
  MMEXT_CHECK_DIM(num_cols, 1);
  TORCH_CHECK(num_rows.scalar_type() == at::kLong && num_cols.scalar_type() == at::kLong,
              "num_rows and num_cols must be int64");
  TORCH_CHECK(num_rows.size(0) == cost.size(0) && num_cols.size(0) == cost.size(0),
              "num_rows and num_cols need one entry per image: cost has ", cost.size(0),
              " images, got ", num_rows.size(0), " and ", num_cols.size(0));
  return batched_linear_sum_assignment_dispatch()(cost.contiguous(), num_rows.contiguous(),
                                                  num_cols.contiguous());
}
