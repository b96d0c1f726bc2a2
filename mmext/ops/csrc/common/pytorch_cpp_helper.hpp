// Argument checks shared by every mmext op.  Each failure names the op's argument, so a user
// sees "pred must be a contiguous float tensor" rather than a segfault or a silent copy.
#pragma once
#include <torch/extension.h>

#define MMEXT_CHECK_FLOATING(x) \
  TORCH_CHECK((x).is_floating_point(), #x " must be a floating-point tensor, got ", (x).scalar_type())
#define MMEXT_CHECK_DIM(x, d) \
  TORCH_CHECK((x).dim() == (d), #x " must have ", (d), " dimensions, got shape ", (x).sizes())
#define MMEXT_CHECK_SAME_DTYPE(x, y)                                                         \
  TORCH_CHECK((x).scalar_type() == (y).scalar_type(), #x " and " #y " must share a dtype, got ", \
              (x).scalar_type(), " and ", (y).scalar_type())
