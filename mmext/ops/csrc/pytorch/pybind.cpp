// Python bindings of mmext._ext.  Every op is dispatched by device inside its entry point.
#include <torch/extension.h>

#include <optional>
#include <vector>

using at::Tensor;

Tensor pairwise_box_l1(const Tensor& pred, const Tensor& gt, double scale);
Tensor pairwise_box_iou(const Tensor& pred, const Tensor& gt, int64_t mode, double eps,
                        double scale);
Tensor batched_linear_sum_assignment(const Tensor& cost, const Tensor& num_rows,
                                     const Tensor& num_cols);
std::vector<Tensor> layer_norm_fwd(const Tensor& x, const std::optional<Tensor>& residual,
                                   const std::optional<Tensor>& pre_bias,
                                   const std::optional<Tensor>& weight,
                                   const std::optional<Tensor>& bias, double eps,
                                   bool keep_prenorm);
std::vector<Tensor> layer_norm_bwd(const Tensor& dy, const Tensor& s, const Tensor& mean,
                                   const Tensor& rstd, const std::optional<Tensor>& weight,
                                   const std::optional<Tensor>& dprenorm, bool param_grads);
Tensor ms_deform_attn_fwd(const Tensor& value, const Tensor& spatial_shapes,
                          const Tensor& level_start_index, const Tensor& sampling_locations,
                          const Tensor& attention_weights);
std::vector<Tensor> ms_deform_attn_bwd(const Tensor& grad_output, const Tensor& value,
                                       const Tensor& spatial_shapes,
                                       const Tensor& level_start_index,
                                       const Tensor& sampling_locations,
                                       const Tensor& attention_weights, bool deterministic);

void adagrad_m_rows(Tensor& param, Tensor& acc, const std::optional<Tensor>& vel,
                    const Tensor& indices, const Tensor& values, double lr, double momentum,
                    double eps);
void adagrad_m_dense(Tensor& param, Tensor& acc, const std::optional<Tensor>& vel,
                     const Tensor& grad, double lr, double momentum, double eps);

#include "source_hash.h"  // MMEXT_SOURCE_HASH, written by setup.py

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mmext compiled operators";
  m.attr("source_hash") = MMEXT_SOURCE_HASH;
#ifdef MMEXT_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.def("pairwise_box_l1", &pairwise_box_l1, "scale * pairwise L1 distance of 4-vectors",
        py::arg("pred"), py::arg("gt"), py::arg("scale") = 1.0);
  m.def("pairwise_box_iou", &pairwise_box_iou, "scale * pairwise IoU/IoF/GIoU of xyxy boxes",
        py::arg("pred"), py::arg("gt"), py::arg("mode"), py::arg("eps"), py::arg("scale") = 1.0);
  m.def("batched_linear_sum_assignment", &batched_linear_sum_assignment,
        "exact minimum-cost matching of every image's cost[b, :num_rows[b], :num_cols[b]]",
        py::arg("cost"), py::arg("num_rows"), py::arg("num_cols"));
  m.def("layer_norm_fwd", &layer_norm_fwd,
        "fused (x + pre_bias + residual) -> LayerNorm; returns [y, mean, rstd, prenorm]",
        py::arg("x"), py::arg("residual"), py::arg("pre_bias"), py::arg("weight"),
        py::arg("bias"), py::arg("eps"), py::arg("keep_prenorm"));
  m.def("layer_norm_bwd", &layer_norm_bwd,
        "LayerNorm backward; returns [dx, dweight, dbias] (the last two only with param_grads)",
        py::arg("dy"), py::arg("s"), py::arg("mean"), py::arg("rstd"), py::arg("weight"),
        py::arg("dprenorm"), py::arg("param_grads"));
  m.def("adagrad_m_rows", &adagrad_m_rows,
        "in-place AdagradM update of param's rows `indices` (repeats summed) by `values`",
        py::arg("param"), py::arg("acc"), py::arg("vel"), py::arg("indices"), py::arg("values"),
        py::arg("lr"), py::arg("momentum"), py::arg("eps"));
  m.def("adagrad_m_dense", &adagrad_m_dense, "in-place AdagradM update of param by grad",
        py::arg("param"), py::arg("acc"), py::arg("vel"), py::arg("grad"), py::arg("lr"),
        py::arg("momentum"), py::arg("eps"));
  m.def("ms_deform_attn_fwd", &ms_deform_attn_fwd,
        "multi-scale deformable attention; returns [bs, num_queries, num_heads * head_dims]",
        py::arg("value"), py::arg("spatial_shapes"), py::arg("level_start_index"),
        py::arg("sampling_locations"), py::arg("attention_weights"));
  m.def("ms_deform_attn_bwd", &ms_deform_attn_bwd,
        "its backward; returns [grad_value, grad_sampling_locations, grad_attention_weights]",
        py::arg("grad_output"), py::arg("value"), py::arg("spatial_shapes"),
        py::arg("level_start_index"), py::arg("sampling_locations"),
        py::arg("attention_weights"), py::arg("deterministic"));
}
