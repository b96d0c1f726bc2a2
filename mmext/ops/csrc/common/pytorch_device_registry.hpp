// Device dispatch for mmext ops, in the spirit of mmcv's registry: an op is declared once with
// its signature, each backend (cpu/, cuda/) registers its implementation from its own
// translation unit, and the public entry point picks the implementation from the device of its
// tensor arguments.  All tensor arguments must be on one device; a device without an
// implementation is an error that names the op and the device.
#pragma once
#include <torch/extension.h>

#include <array>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace mmext {

template <typename Signature>
class DeviceDispatch;

template <typename Ret, typename... Args>
class DeviceDispatch<Ret(Args...)> {
 public:
  using Impl = Ret (*)(Args...);

  explicit DeviceDispatch(const char* op_name) : op_name_(op_name) { impls_.fill(nullptr); }

  bool add(c10::DeviceType device, Impl impl) {
    impls_[static_cast<size_t>(device)] = impl;
    return true;
  }

  Ret operator()(Args... args) const {
    std::optional<c10::Device> device;
    (note_device(device, args), ...);
    TORCH_CHECK(device.has_value(), op_name_, ": no defined tensor argument to dispatch on");
    const Impl impl = impls_[static_cast<size_t>(device->type())];
    TORCH_CHECK(impl != nullptr, op_name_, " has no ", c10::DeviceTypeName(device->type()),
                " implementation in this build of mmext (a CUDA implementation needs mmext "
                "built with CUDA: FORCE_CUDA=1 pip install -e . --no-build-isolation)");
    return impl(std::forward<Args>(args)...);
  }

 private:
  template <typename T>
  void note_device(std::optional<c10::Device>& device, const T& arg) const {
    using U = std::decay_t<T>;
    if constexpr (std::is_same_v<U, at::Tensor>) {
      note_tensor(device, arg);
    } else if constexpr (std::is_same_v<U, std::optional<at::Tensor>>) {
      if (arg.has_value()) note_tensor(device, *arg);
    }
  }

  void note_tensor(std::optional<c10::Device>& device, const at::Tensor& t) const {
    if (!t.defined()) return;
    if (!device.has_value()) {
      device = t.device();
    } else {
      TORCH_CHECK(*device == t.device(), op_name_, ": tensor arguments are on different "
                  "devices (", device->str(), " and ", t.device().str(), ")");
    }
  }

  const char* op_name_;
  std::array<Impl, static_cast<size_t>(c10::DeviceType::COMPILE_TIME_MAX_DEVICE_TYPES)> impls_;
};

}  // namespace mmext

// Declares the dispatcher of op `name` with function type `signature` (in a header).
#define MMEXT_DECLARE_DISPATCH(name, signature) \
  ::mmext::DeviceDispatch<signature>& name##_dispatch();

// Defines it (in the op's device-independent .cpp).
#define MMEXT_DEFINE_DISPATCH(name, signature)                       \
  ::mmext::DeviceDispatch<signature>& name##_dispatch() {            \
    static ::mmext::DeviceDispatch<signature> dispatcher(#name);     \
    return dispatcher;                                               \
  }

// Registers a backend implementation (in cpu/*.cpp or cuda/*.cu), at load time of the library.
#define MMEXT_REGISTER_IMPL(name, device, impl) \
  static const bool name##_##device##_registered =  \
      name##_dispatch().add(c10::DeviceType::device, impl);
