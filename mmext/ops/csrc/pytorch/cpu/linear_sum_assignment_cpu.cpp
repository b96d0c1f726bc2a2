// Exact linear sum assignment on the CPU for a whole batch, one image per task.
//
// Shortest augmenting paths with dual variables (Jonker & Volgenant 1987, in the rectangular
// form of Crouse, "On implementing 2D rectangular assignment algorithms", IEEE TAES 2016, Alg. 1
// and 4), the algorithm scipy.optimize.linear_sum_assignment implements.  Every row of the
// smaller side is added by one Dijkstra-like search over reduced costs
// c[i][j] - u[i] - v[j] >= 0, and the duals are updated so reduced costs stay non-negative,
// which makes the final matching optimal.  Costs are read as double, so float32 inputs give
// the optimum of their exact values.  Columns are scanned in scipy's order and ties prefer
// an unassigned column as scipy does, so equal-cost alternatives usually resolve alike.
#include <ATen/Parallel.h>

#include <limits>
#include <vector>

#include "pytorch_cpp_helper.hpp"
#include "pytorch_device_registry.hpp"

using at::Tensor;

MMEXT_DECLARE_DISPATCH(batched_linear_sum_assignment, Tensor(const Tensor&, const Tensor&,
                                                              const Tensor&))

namespace {

// One image: an nr x nc block with nr <= nc after the optional transpose; element (i, j) of the
// solved problem is base[i * si + j * sj].  Writes col4row[i] for i < nr.
template <typename T>
void solve_block(const T* base, int64_t si, int64_t sj, int64_t nr, int64_t nc,
                 int64_t* col4row) {
  const double inf = std::numeric_limits<double>::infinity();
  // A contiguous double copy (transposed when solving over columns): the search below reads
  // every row many times, and this makes the reads unit-stride and conversion-free.
  std::vector<double> c(nr * nc);
  for (int64_t i = 0; i < nr; ++i) {
    for (int64_t j = 0; j < nc; ++j) c[i * nc + j] = static_cast<double>(base[i * si + j * sj]);
  }
  std::vector<double> u(nr, 0.), v(nc, 0.), shortest(nc);
  std::vector<int64_t> path(nc, -1), row4col(nc, -1), remaining(nc);
  std::vector<char> seen_row(nr), seen_col(nc);
  for (int64_t i = 0; i < nr; ++i) col4row[i] = -1;

  for (int64_t cur = 0; cur < nr; ++cur) {
    // Dijkstra over columns from row `cur` until an unassigned column (the sink) is reached.
    std::fill(shortest.begin(), shortest.end(), inf);
    std::fill(seen_row.begin(), seen_row.end(), 0);
    std::fill(seen_col.begin(), seen_col.end(), 0);
    for (int64_t k = 0; k < nc; ++k) remaining[k] = nc - 1 - k;
    int64_t num_remaining = nc, i = cur, sink = -1;
    double min_val = 0.;
    while (sink < 0) {
      seen_row[i] = 1;
      double lowest = inf;
      int64_t pick = -1;
      for (int64_t k = 0; k < num_remaining; ++k) {
        const int64_t j = remaining[k];
        const double r = min_val + c[i * nc + j] - u[i] - v[j];
        if (r < shortest[j]) {
          path[j] = i;
          shortest[j] = r;
        }
        if (shortest[j] < lowest || (shortest[j] == lowest && row4col[j] < 0)) {
          lowest = shortest[j];
          pick = k;
        }
      }
      TORCH_CHECK(pick >= 0 && lowest < inf, "linear sum assignment is infeasible "
                  "(non-finite costs must be rejected before solving)");
      min_val = lowest;
      const int64_t j = remaining[pick];
      seen_col[j] = 1;
      remaining[pick] = remaining[--num_remaining];
      if (row4col[j] < 0) {
        sink = j;
      } else {
        i = row4col[j];
      }
    }
    // Dual update keeps every reduced cost non-negative and the path's edges tight.
    u[cur] += min_val;
    for (int64_t r = 0; r < nr; ++r) {
      if (seen_row[r] && r != cur) u[r] += min_val - shortest[col4row[r]];
    }
    for (int64_t j = 0; j < nc; ++j) {
      if (seen_col[j]) v[j] -= min_val - shortest[j];
    }
    // Flip the augmenting path back to `cur`.
    for (int64_t j = sink;;) {
      const int64_t r = path[j];
      row4col[j] = r;
      std::swap(col4row[r], j);
      if (r == cur) break;
    }
  }
}

Tensor batched_linear_sum_assignment_cpu(const Tensor& cost, const Tensor& num_rows,
                                         const Tensor& num_cols) {
  const int64_t B = cost.size(0), R = cost.size(1), C = cost.size(2);
  const int64_t* nr_ptr = num_rows.data_ptr<int64_t>();
  const int64_t* nc_ptr = num_cols.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(nr_ptr[b] >= 0 && nr_ptr[b] <= R && nc_ptr[b] >= 0 && nc_ptr[b] <= C,
                "image ", b, ": block ", nr_ptr[b], "x", nc_ptr[b], " exceeds the padded ", R,
                "x", C, " cost");
  }
  Tensor match = at::full({B, R}, -1, num_rows.options());
  int64_t* out = match.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(cost.scalar_type(), "batched_linear_sum_assignment_cpu", [&] {
    const scalar_t* data = cost.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      std::vector<int64_t> assigned;
      for (int64_t b = begin; b < end; ++b) {
        const int64_t nr = nr_ptr[b], nc = nc_ptr[b];
        if (nr == 0 || nc == 0) continue;
        const scalar_t* block = data + b * R * C;
        int64_t* row_match = out + b * R;
        if (nr <= nc) {
          solve_block(block, C, 1, nr, nc, row_match);
        } else {  // more rows than columns: match every column to a row instead
          assigned.assign(nc, -1);
          solve_block(block, 1, C, nc, nr, assigned.data());
          for (int64_t c = 0; c < nc; ++c) row_match[assigned[c]] = c;
        }
      }
    });
  });
  return match;
}

}  // namespace

MMEXT_REGISTER_IMPL(batched_linear_sum_assignment, CPU, batched_linear_sum_assignment_cpu)
