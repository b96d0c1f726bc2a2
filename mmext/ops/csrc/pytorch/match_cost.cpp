// Pairwise box match costs of DETR-style assigners (Carion et al., ECCV 2020, eq. 2): the
// device-independent entry points.  Each computes a whole [B, Q, G] cost block in one pass,
// where the equivalent torch expression makes about twenty passes over it.
#include "pytorch_cpp_helper.hpp"
#include "pytorch_device_registry.hpp"

using at::Tensor;

MMEXT_DEFINE_DISPATCH(pairwise_box_l1, Tensor(const Tensor&, const Tensor&, double))
MMEXT_DEFINE_DISPATCH(pairwise_box_iou, Tensor(const Tensor&, const Tensor&, int64_t, double,
                                               double))

static void check_boxes(const Tensor& pred, const Tensor& gt) {
  MMEXT_CHECK_DIM(pred, 3);
  MMEXT_CHECK_DIM(gt, 3);
  MMEXT_CHECK_FLOATING(pred);
  MMEXT_CHECK_SAME_DTYPE(pred, gt);
  TORCH_CHECK(pred.size(2) == 4 && gt.size(2) == 4,
              "boxes must have 4 coordinates in the last dimension, got pred ", pred.sizes(),
              " and gt ", gt.sizes());
  TORCH_CHECK(pred.size(0) == gt.size(0), "pred and gt must have the same batch size, got ",
              pred.size(0), " and ", gt.size(0));
}

// scale * sum_k |pred[b, q, k] - gt[b, g, k]|, summed in the order k = 0..3.
Tensor pairwise_box_l1(const Tensor& pred, const Tensor& gt, double scale) {
  check_boxes(pred, gt);
  return pairwise_box_l1_dispatch()(pred.contiguous(), gt.contiguous(), scale);
}

// scale * IoU (mode 0), IoF (mode 1) or GIoU (mode 2) of xyxy boxes, areas floored at eps.
Tensor pairwise_box_iou(const Tensor& pred, const Tensor& gt, int64_t mode, double eps,
                        double scale) {
  check_boxes(pred, gt);
  TORCH_CHECK(mode >= 0 && mode <= 2, "mode must be 0 (iou), 1 (iof) or 2 (giou), got ", mode);
  return pairwise_box_iou_dispatch()(pred.contiguous(), gt.contiguous(), mode, eps, scale);
}
