// CPU kernels of the fused LayerNorm: rows in parallel (at::parallel_for), SIMD within a row.
//
// Numerics (all dtypes): the pre-norm sum s = x + pre_bias + residual is rounded to the input
// dtype exactly as the unfused `layer_norm(x + bias + residual)` rounds it.  Row statistics are
// returned (and kept for backward) in float64.  They are two-pass and shift-robust, so
// |mean| >> std stays accurate where a one-pass float32 mean/variance fails:
//   1. mean = K + sum(s - K) / N with K = s[0]: s - K is exact (Sterbenz) when |mean| >> std;
//   2. var = sum(d^2) / N, d = (s - hi) - lo, where hi + lo is the mean split into two floats.
// Sums run in float32 SIMD lanes over blocks of kBlock elements (each lane adds 8 terms) and the
// blocks are added up in float64, so the rounding error does not grow with N.  The SIMD kernels
// normalise with xhat = (s - hi) * rstd - lo * rstd.  A row whose float32 sum of squares
// overflows (|s| > ~1e19) is redone in float64.
//
// ISA: setup.py compiles the extension for the baseline x86-64 ISA (SSE2), where ATen's
// at::vec::Vectorized would be its scalar-array DEFAULT variant.  So the SIMD kernels use GCC
// vector extensions plus F16C conversions, compiled for AVX2+FMA+F16C in a `#pragma GCC target`
// region and chosen at run time when the CPU has them.  Elsewhere (and for float64, which is the
// gradcheck path) the scalar kernels run; MMEXT_LN_CPU_KERNEL=scalar forces them (tests).
// at::parallel_for only runs on several threads when the extension is compiled with -fopenmp
// (ATen's OpenMP backend is header code); without it, it runs the whole range on one thread.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "pytorch_cpp_helper.hpp"
#include "layer_norm_dispatch.hpp"

// 1: the SIMD region is built for AVX2+FMA+F16C with x86 intrinsics (GCC on x86); 0: portable
// GCC/clang vector extensions for the target's baseline ISA (-DMMEXT_LN_X86_SIMD=0 to test it).
#ifndef MMEXT_LN_X86_SIMD
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__)
#define MMEXT_LN_X86_SIMD 1
#else
#define MMEXT_LN_X86_SIMD 0
#endif
#endif
#if MMEXT_LN_X86_SIMD
#include <immintrin.h>
#endif

using at::Tensor;

namespace {

template <typename T>
const T* ptr_or_null(const OptTensor& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}

bool given(const OptTensor& t) { return t.has_value() && t->defined(); }

// ------------------------------------------------------------------------------------------
// Scalar kernels: float64 (gradcheck) and CPUs without AVX2/FMA/F16C.  Statistics in double.
// ------------------------------------------------------------------------------------------

template <typename T>
void scalar_forward_rows(const T* x, const T* residual, const T* pre_bias, const T* weight,
                         const T* bias, T* y, T* prenorm, double* mean_out, double* rstd_out,
                         int64_t begin, int64_t end, int64_t N, double eps) {
  using acc_t = at::opmath_type<T>;
  for (int64_t m = begin; m < end; ++m) {
    const T* in = x + m * N;
    if (prenorm != nullptr) {  // s = x + pre_bias + residual, rounded to T like unfused code
      T* s = prenorm + m * N;
      const T* r = residual != nullptr ? residual + m * N : nullptr;
      for (int64_t n = 0; n < N; ++n) {
        acc_t v = static_cast<acc_t>(in[n]);
        if (pre_bias != nullptr) {
          v = static_cast<acc_t>(static_cast<T>(v + static_cast<acc_t>(pre_bias[n])));
        }
        if (r != nullptr) v += static_cast<acc_t>(r[n]);
        s[n] = static_cast<T>(v);
      }
      in = s;
    }
    double sum = 0.;
    for (int64_t n = 0; n < N; ++n) sum += static_cast<double>(in[n]);
    const double mu = N > 0 ? sum / N : 0.;
    double sq = 0.;
    for (int64_t n = 0; n < N; ++n) {
      const double d = static_cast<double>(in[n]) - mu;
      sq += d * d;
    }
    const double var = N > 0 ? sq / N : 0.;
    const double rstd = 1. / std::sqrt(var + eps);
    mean_out[m] = mu;
    rstd_out[m] = rstd;
    T* out = y + m * N;
    for (int64_t n = 0; n < N; ++n) {
      acc_t v = static_cast<acc_t>((static_cast<double>(in[n]) - mu) * rstd);
      if (weight != nullptr) v *= static_cast<acc_t>(weight[n]);
      if (bias != nullptr) v += static_cast<acc_t>(bias[n]);
      out[n] = static_cast<T>(v);
    }
  }
}

template <typename T>
void scalar_backward_rows(const T* dy, const T* s, const double* mean, const double* rstd,
                          const T* weight, const T* dprenorm, T* dx, at::opmath_type<T>* dw,
                          at::opmath_type<T>* db, int64_t begin, int64_t end, int64_t N) {
  using acc_t = at::opmath_type<T>;
  for (int64_t m = begin; m < end; ++m) {
    const T* g_row = dy + m * N;
    const T* s_row = s + m * N;
    const double mu = mean[m], r = rstd[m];
    // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight.
    acc_t sum_g = 0, sum_gx = 0;
    for (int64_t n = 0; n < N; ++n) {
      const acc_t xhat = static_cast<acc_t>((static_cast<double>(s_row[n]) - mu) * r);
      acc_t g = static_cast<acc_t>(g_row[n]);
      if (dw != nullptr) {
        dw[n] += g * xhat;
        db[n] += g;
      }
      if (weight != nullptr) g *= static_cast<acc_t>(weight[n]);
      sum_g += g;
      sum_gx += g * xhat;
    }
    const acc_t mean_g = sum_g / N, mean_gx = sum_gx / N;
    T* out = dx + m * N;
    const T* extra = dprenorm != nullptr ? dprenorm + m * N : nullptr;
    for (int64_t n = 0; n < N; ++n) {
      const acc_t xhat = static_cast<acc_t>((static_cast<double>(s_row[n]) - mu) * r);
      acc_t g = static_cast<acc_t>(g_row[n]);
      if (weight != nullptr) g *= static_cast<acc_t>(weight[n]);
      acc_t v = (g - mean_g - xhat * mean_gx) * static_cast<acc_t>(r);
      if (extra != nullptr) v += static_cast<acc_t>(extra[n]);
      out[n] = static_cast<T>(v);
    }
  }
}

// Arguments of the SIMD kernels.  weight/bias/pre_bias are float32 copies (ones/zeros when
// absent) so that the row loops have no branches and convert them once per call, not per row.
template <typename T>
struct FwdArgs {
  const T* x;
  const T* residual;     // nullable
  const float* pre_bias;  // nullable
  const float* weight;
  const float* bias;
  T* y;
  T* prenorm;  // non-null when something is added (then it is what gets normalised)
  double* mean;
  double* rstd;
  int64_t N;
  double eps;
};

template <typename T>
struct BwdArgs {
  const T* dy;
  const T* s;
  const double* mean;
  const double* rstd;
  const float* weight;
  const T* dprenorm;  // nullable
  T* dx;
  int64_t N;
};

}  // namespace

// ------------------------------------------------------------------------------------------
// SIMD kernels.  Only this region is compiled for AVX2+FMA+F16C (x86); it calls no out-of-line
// library templates, so nothing built for AVX2 can be picked by the linker for other code.
// ------------------------------------------------------------------------------------------
#if MMEXT_LN_X86_SIMD
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
// Vector arguments of the helpers below change ABI without AVX; they are all internal and
// inlined.  (The warning is emitted at the end of the file, so it stays off from here on.)
#pragma GCC diagnostic ignored "-Wpsabi"

namespace mmext_ln_simd {
namespace {

constexpr int W = 8;  // float lanes (one 256-bit register)
typedef float V __attribute__((vector_size(4 * W)));
typedef double D4 __attribute__((vector_size(32)));
typedef uint32_t U __attribute__((vector_size(4 * W)));
typedef uint16_t H __attribute__((vector_size(2 * W)));
constexpr int64_t kBlock = 16 * W;  // elements summed in float before folding into double

inline V bcast(float s) { return V{} + s; }
inline V vfma(V a, V b, V c) {
#if MMEXT_LN_X86_SIMD
  return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
  return a * b + c;
#endif
}
inline V vfnma(V a, V b, V c) {  // c - a * b
#if MMEXT_LN_X86_SIMD
  return (V)_mm256_fnmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
  return c - a * b;
#endif
}
// Float64 accumulator of float32 lanes (two 4-lane halves: no 512-bit types needed).
struct Acc {
  D4 lo = D4{}, hi = D4{};
  inline void add(V v) {
    lo += __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), D4);
    hi += __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), D4);
  }
  inline double sum() const {
    const D4 t = lo + hi;
    return (t[0] + t[1]) + (t[2] + t[3]);
  }
};

inline V load(const float* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, V v) { __builtin_memcpy(p, &v, sizeof v); }

inline V load(const c10::BFloat16* p) {  // bfloat16 is the top half of a float32
#if MMEXT_LN_X86_SIMD  // one vpmovzxwd (GCC splits __builtin_convertvector into four ops)
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return (V)_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
#else
  H h;
  __builtin_memcpy(&h, p, sizeof h);
  return (V)(__builtin_convertvector(h, U) << 16);
#endif
}
#if MMEXT_LN_X86_SIMD
// bfloat16 bits of v in the low half of each 32-bit lane: round to nearest even, NaN -> quiet NaN
// (as c10::BFloat16(float)).
inline __m256i bf16_bits(V v) {
  const __m256i u = _mm256_castps_si256((__m256)v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
  const __m256 nan = _mm256_cmp_ps((__m256)v, (__m256)v, _CMP_UNORD_Q);
  return _mm256_srli_epi32(
      _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r),
                                           _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)),
                                           nan)),
      16);
}
inline void store(c10::BFloat16* p, V v) {
  const __m256i r = bf16_bits(v);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
}
inline void store2(c10::BFloat16* p, V a, V b) {  // p[0, 2W): one pack for two vectors
  const __m256i packed = _mm256_packus_epi32(bf16_bits(a), bf16_bits(b));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_permute4x64_epi64(packed, 0xd8));
}
#else
inline void store(c10::BFloat16* p, V v) {  // round to nearest even, NaN -> quiet NaN (as c10)
  const U u = (U)v;
  const U nan = (U)(v != v);
  const U r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const H h = __builtin_convertvector((r & ~nan) | (nan & 0x7fc0u), H);
  __builtin_memcpy(p, &h, sizeof h);
}
#endif

inline V load(const c10::Half* p) {
#if MMEXT_LN_X86_SIMD
  return (V)_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
  V v;
  for (int i = 0; i < W; ++i) v[i] = static_cast<float>(p[i]);
  return v;
#endif
}
inline void store(c10::Half* p, V v) {  // round to nearest even, as c10::Half(float)
#if MMEXT_LN_X86_SIMD
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm256_cvtps_ph((__m256)v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
  for (int i = 0; i < W; ++i) p[i] = c10::Half(v[i]);
#endif
}

// The value a float becomes when stored as T (identity for float).
template <typename T>
inline V round_to(V v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    T tmp[W];
    store(tmp, v);
    return load(tmp);
  }
}
template <typename T>
inline float round_to(float v) {
  return static_cast<float>(static_cast<T>(v));
}

// Stores two vectors to p[0, 2W).
template <typename T>
inline void store2(T* p, V a, V b) {
  store(p, a);
  store(p + W, b);
}

// Adds body(n, a) over n = 0, W, ..., nv - W into out[0, K): float32 lanes within blocks of
// kBlock elements (two interleaved accumulator sets for ILP), float64 across blocks.
template <int K, typename Body>
inline void block_sums(int64_t nv, const Body& body, double* out) {
  Acc acc[K];
  for (int64_t n0 = 0; n0 < nv; n0 += kBlock) {
    const int64_t stop = nv < n0 + kBlock ? nv : n0 + kBlock;
    V a[K], b[K];
    for (int k = 0; k < K; ++k) a[k] = b[k] = V{};
    int64_t n = n0;
    for (; n + 2 * W <= stop; n += 2 * W) {
      body(n, a);
      body(n + W, b);
    }
    if (n < stop) body(n, a);
    for (int k = 0; k < K; ++k) acc[k].add(a[k] + b[k]);
  }
  for (int k = 0; k < K; ++k) out[k] = acc[k].sum();
}

// mean = K + sum(f - K) / N from the shifted sum; then rstd from the deviations about the
// mean (second pass over f, which is in cache); see the file comment.
inline void finish_moments(const float* f, int64_t N, float K, double shifted, double eps,
                           double* mean_out, double* rstd_out) {
  const int64_t nv = N / W * W;
  const double mean = static_cast<double>(K) + shifted / N;
  const float hi = static_cast<float>(mean);
  const float lo = static_cast<float>(mean - static_cast<double>(hi));
  const V vhi = bcast(hi), vlo = bcast(lo);
  double sq;  // sum of squared deviations
  block_sums<1>(nv, [&](int64_t n, V* a) {
    const V d = (load(f + n) - vhi) - vlo;
    a[0] = vfma(d, d, a[0]);
  }, &sq);
  for (int64_t n = nv; n < N; ++n) {
    const float d = (f[n] - hi) - lo;
    sq += static_cast<double>(d) * d;
  }
  double var = sq / N;
  if (!__builtin_isfinite(var)) {  // float32 squares overflowed (|s| > ~1e19): redo in double
    sq = 0.;
    for (int64_t n = 0; n < N; ++n) {
      const double d = static_cast<double>(f[n]) - mean;
      sq += d * d;
    }
    var = sq / N;
  }
  var = var > 0. ? var : 0.;
  *mean_out = mean;
  *rstd_out = 1. / __builtin_sqrt(var + eps);
}

template <typename T>
void forward_rows(const FwdArgs<T>& a, int64_t begin, int64_t end, float* buf) {
  constexpr bool kFloat = std::is_same_v<T, float>;
  const int64_t N = a.N, nv = N / W * W;
  const float* pb = a.pre_bias;
  for (int64_t m = begin; m < end; ++m) {
    const T* xr = a.x + m * N;
    T* sr = a.prenorm != nullptr ? a.prenorm + m * N : nullptr;
    const T* rr = a.residual != nullptr ? a.residual + m * N : nullptr;
    // Pass 1 makes the float32 row f to normalise (s = x + pre_bias + residual rounded to T
    // like unfused code, written to prenorm; or x itself) and sums f - f[0].
    auto make = [&](int64_t n) {
      float v = static_cast<float>(xr[n]);
      if (sr != nullptr) {
        if (pb != nullptr) v = round_to<T>(v + pb[n]);
        if (rr != nullptr) v = round_to<T>(v + static_cast<float>(rr[n]));
        sr[n] = static_cast<T>(v);
      }
      if constexpr (!kFloat) buf[n] = v;
      return v;
    };
    const float* f = !kFloat ? buf : sr != nullptr ? reinterpret_cast<const float*>(sr)
                                                   : reinterpret_cast<const float*>(xr);
    const float K = make(0);
    const V vK = bcast(K);
    double shifted;
    block_sums<1>(nv, [&](int64_t n, V* acc) {
      V v = load(xr + n);
      if (sr != nullptr) {
        if (pb != nullptr) v = round_to<T>(v + load(pb + n));
        if (rr != nullptr) v = round_to<T>(v + load(rr + n));
        store(sr + n, v);
      }
      if constexpr (!kFloat) store(buf + n, v);
      acc[0] += v - vK;
    }, &shifted);
    for (int64_t n = nv; n < N; ++n) shifted += static_cast<double>(make(n) - K);
    double mean, rstd;
    finish_moments(f, N, K, shifted, a.eps, &mean, &rstd);
    a.mean[m] = mean;
    a.rstd[m] = rstd;

    // Pass 2: y = xhat * weight + bias.
    const float hi = static_cast<float>(mean);
    const float lo = static_cast<float>(mean - static_cast<double>(hi));
    const float r = static_cast<float>(rstd);
    const float nlr = -lo * r;  // xhat = (f - hi) * r - lo * r: f - hi is exact when it matters
    const V vhi = bcast(hi), vr = bcast(r), vnlr = bcast(nlr);
    const float* w = a.weight;
    const float* b = a.bias;
    T* out = a.y + m * N;
    int64_t n = 0;
    for (; n + 2 * W <= nv; n += 2 * W) {
      const V xhat0 = vfma(load(f + n) - vhi, vr, vnlr);
      const V xhat1 = vfma(load(f + n + W) - vhi, vr, vnlr);
      store2(out + n, vfma(xhat0, load(w + n), load(b + n)),
             vfma(xhat1, load(w + n + W), load(b + n + W)));
    }
    for (; n < nv; n += W) {
      const V xhat = vfma(load(f + n) - vhi, vr, vnlr);
      store(out + n, vfma(xhat, load(w + n), load(b + n)));
    }
    for (; n < N; ++n) {
      const float xhat = __builtin_fmaf(f[n] - hi, r, nlr);
      out[n] = static_cast<T>(__builtin_fmaf(xhat, w[n], b[n]));
    }
  }
}

// Rows [begin, end); dw/db (nullable) are this chunk's float32 partial sums over its rows.
template <typename T>
void backward_rows(const BwdArgs<T>& a, int64_t begin, int64_t end, float* dw, float* db,
                   float* buf) {
  constexpr bool kFloat = std::is_same_v<T, float>;
  const int64_t N = a.N, nv = N / W * W;
  const float* w = a.weight;
  for (int64_t m = begin; m < end; ++m) {
    const T* sr = a.s + m * N;
    const T* gr = a.dy + m * N;
    const float* f = kFloat ? reinterpret_cast<const float*>(sr) : buf;
    const double mean = a.mean[m];
    const float hi = static_cast<float>(mean);
    const float lo = static_cast<float>(mean - static_cast<double>(hi));
    const float r = static_cast<float>(a.rstd[m]);
    const float nlr = -lo * r;  // xhat = (f - hi) * r - lo * r, as in the forward
    const V vhi = bcast(hi), vr = bcast(r), vnlr = bcast(nlr);

    // Pass 1: sums of g = dy * weight and g * xhat; dweight/dbias partials; half types keep
    // a float32 copy of the row for pass 2.
    double sums[2];
    block_sums<2>(nv, [&](int64_t n, V* acc) {
      const V sv = load(sr + n);
      if constexpr (!kFloat) store(buf + n, sv);
      const V xhat = vfma(sv - vhi, vr, vnlr);
      const V dyv = load(gr + n);
      if (dw != nullptr) {
        store(dw + n, vfma(dyv, xhat, load(dw + n)));
        store(db + n, load(db + n) + dyv);
      }
      const V g = dyv * load(w + n);
      acc[0] += g;
      acc[1] = vfma(g, xhat, acc[1]);
    }, sums);
    for (int64_t n = nv; n < N; ++n) {
      const float sv = static_cast<float>(sr[n]);
      if constexpr (!kFloat) buf[n] = sv;
      const float xhat = __builtin_fmaf(sv - hi, r, nlr);
      const float dyv = static_cast<float>(gr[n]);
      if (dw != nullptr) {
        dw[n] = __builtin_fmaf(dyv, xhat, dw[n]);
        db[n] += dyv;
      }
      const float g = dyv * w[n];
      sums[0] += g;
      sums[1] += static_cast<double>(g) * xhat;
    }
    const double mean_g = sums[0] / N, mean_gx = sums[1] / N;

    // Pass 2: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) [+ dprenorm], expanded with
    // xhat = (f - hi) * rstd - lo * rstd into dx = g * rstd - (f - hi) * a1 + c0.
    const double rd = a.rstd[m];
    const float a1 = static_cast<float>(rd * rd * mean_gx);
    const float c0 = static_cast<float>(-rd * (mean_g + static_cast<double>(nlr) * mean_gx));
    const V va1 = bcast(a1), vc0 = bcast(c0);
    const T* extra = a.dprenorm != nullptr ? a.dprenorm + m * N : nullptr;
    T* out = a.dx + m * N;
    int64_t n = 0;
    for (; n < nv; n += W) {
      const V g = load(gr + n) * load(w + n);
      V v = vfma(g, vr, vfnma(load(f + n) - vhi, va1, vc0));
      if (extra != nullptr) v += load(extra + n);
      store(out + n, v);
    }
    for (; n < N; ++n) {
      const float g = static_cast<float>(gr[n]) * w[n];
      float v = __builtin_fmaf(g, r, __builtin_fmaf(-(f[n] - hi), a1, c0));
      if (extra != nullptr) v += static_cast<float>(extra[n]);
      out[n] = static_cast<T>(v);
    }
  }
}

}  // namespace
}  // namespace mmext_ln_simd

#if MMEXT_LN_X86_SIMD
#pragma GCC pop_options
#endif

namespace {

// Whether the SIMD kernels may run: the CPU has what they were compiled for, and the caller has
// not asked for the scalar kernels (MMEXT_LN_CPU_KERNEL=scalar, read per call for tests).
bool use_simd() {
#if MMEXT_LN_X86_SIMD
  static const bool cpu_ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                             __builtin_cpu_supports("f16c");
#else
  static const bool cpu_ok = true;
#endif
  const char* env = std::getenv("MMEXT_LN_CPU_KERNEL");
  return cpu_ok && !(env != nullptr && std::strcmp(env, "scalar") == 0);
}

// Rows per task: enough work (~16k elements) that a task outweighs the scheduling cost.
int64_t row_grain(int64_t N) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(N, 1)); }

// A float32 copy of an optional [N] parameter, or `fill` everywhere when it is absent.
Tensor as_float_row(const OptTensor& t, int64_t N, const Tensor& like, float fill) {
  if (!given(t)) return at::full({N}, fill, like.options().dtype(at::kFloat));
  return t->to(at::kFloat).contiguous();
}

// Fills y, mean, rstd (and prenorm when something is added) for x of type T.
template <typename T>
void forward_impl(const Tensor& x, const OptTensor& residual, const OptTensor& pre_bias,
                  const OptTensor& weight, const OptTensor& bias, double eps, Tensor& y,
                  Tensor& mean, Tensor& rstd, Tensor& prenorm, bool add) {
  const int64_t M = x.size(0), N = x.size(1);
  if constexpr (!std::is_same_v<T, double>) {
    if (use_simd()) {
      const Tensor w = as_float_row(weight, N, x, 1.f), b = as_float_row(bias, N, x, 0.f);
      const Tensor pb = given(pre_bias) ? as_float_row(pre_bias, N, x, 0.f) : Tensor();
      const FwdArgs<T> args{x.data_ptr<T>(), ptr_or_null<T>(residual),
                            pb.defined() ? pb.data_ptr<float>() : nullptr, w.data_ptr<float>(),
                            b.data_ptr<float>(), y.data_ptr<T>(),
                            add ? prenorm.data_ptr<T>() : nullptr, mean.data_ptr<double>(),
                            rstd.data_ptr<double>(), N, eps};
      at::parallel_for(0, M, row_grain(N), [&](int64_t begin, int64_t end) {
        // Half types are normalised from a float32 copy of the row (converted once).
        std::unique_ptr<float[]> buf(std::is_same_v<T, float> ? nullptr : new float[N]);
        mmext_ln_simd::forward_rows<T>(args, begin, end, buf.get());
      });
      return;
    }
  }
  const T* xp = x.data_ptr<T>();
  const T* rp = ptr_or_null<T>(residual);
  const T* pbp = ptr_or_null<T>(pre_bias);
  const T* wp = ptr_or_null<T>(weight);
  const T* bp = ptr_or_null<T>(bias);
  T* yp = y.data_ptr<T>();
  T* sp = add ? prenorm.data_ptr<T>() : nullptr;
  double* mp = mean.data_ptr<double>();
  double* rsp = rstd.data_ptr<double>();
  at::parallel_for(0, M, row_grain(N), [&](int64_t begin, int64_t end) {
    scalar_forward_rows<T>(xp, rp, pbp, wp, bp, yp, sp, mp, rsp, begin, end, N, eps);
  });
}

std::vector<Tensor> layer_norm_fwd_cpu(const Tensor& x, const OptTensor& residual,
                                       const OptTensor& pre_bias, const OptTensor& weight,
                                       const OptTensor& bias, double eps, bool keep_prenorm) {
  const int64_t M = x.size(0), N = x.size(1);
  Tensor y = at::empty_like(x);
  Tensor mean = at::empty({M}, x.options().dtype(at::kDouble));
  Tensor rstd = at::empty({M}, x.options().dtype(at::kDouble));
  Tensor prenorm;
  const bool add = given(residual) || given(pre_bias);
  if (keep_prenorm || add) prenorm = at::empty_like(x);
  if (prenorm.defined() && !add) prenorm.copy_(x);
  if (M == 0 || N == 0) {  // empty rows: mean 0 and var 0, as the two-pass formulas give
    mean.zero_();
    rstd.fill_(1. / std::sqrt(eps));
    return {y, mean, rstd, prenorm};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "layer_norm_fwd_cpu", [&] {
    forward_impl<scalar_t>(x, residual, pre_bias, weight, bias, eps, y, mean, rstd, prenorm, add);
  });
  return {y, mean, rstd, prenorm};
}

// Calls body(r0, r1, dw, db) for each of num_chunks equal chunks of the M rows, in parallel;
// chunk c owns the partial rows dw = parts[0, c] and db = parts[1, c] of parts [2, chunks, N]
// (both null when parts is).
template <typename Acc, typename Body>
void for_each_row_chunk(int64_t M, int64_t num_chunks, int64_t N, Acc* parts, const Body& body) {
  const int64_t rows_per_chunk = (M + num_chunks - 1) / num_chunks;
  at::parallel_for(0, num_chunks, 1, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      const int64_t r0 = std::min(M, c * rows_per_chunk);
      body(r0, std::min(M, r0 + rows_per_chunk), parts != nullptr ? parts + c * N : nullptr,
           parts != nullptr ? parts + (num_chunks + c) * N : nullptr);
    }
  });
}

// dx for rows of type T; dweight/dbias partials per chunk of rows into parts [2, chunks, N]
// (undefined without param_grads).
template <typename T>
void backward_impl(const Tensor& dy, const Tensor& s, const Tensor& mean, const Tensor& rstd,
                   const OptTensor& weight, const OptTensor& dprenorm, Tensor& dx, Tensor& parts,
                   int64_t num_chunks) {
  using acc_t = at::opmath_type<T>;
  const int64_t M = s.size(0), N = s.size(1);
  acc_t* parts_p = parts.defined() ? parts.data_ptr<acc_t>() : nullptr;
  if constexpr (!std::is_same_v<T, double>) {
    if (use_simd()) {
      const Tensor w = as_float_row(weight, N, s, 1.f);
      const BwdArgs<T> args{dy.data_ptr<T>(), s.data_ptr<T>(), mean.data_ptr<double>(),
                            rstd.data_ptr<double>(), w.data_ptr<float>(),
                            ptr_or_null<T>(dprenorm), dx.data_ptr<T>(), N};
      for_each_row_chunk(M, num_chunks, N, parts_p,
                         [&](int64_t r0, int64_t r1, float* dw, float* db) {
        std::unique_ptr<float[]> buf(std::is_same_v<T, float> ? nullptr : new float[N]);
        mmext_ln_simd::backward_rows<T>(args, r0, r1, dw, db, buf.get());
      });
      return;
    }
  }
  const T* dyp = dy.data_ptr<T>();
  const T* sp = s.data_ptr<T>();
  const double* mp = mean.data_ptr<double>();
  const double* rp = rstd.data_ptr<double>();
  const T* wp = ptr_or_null<T>(weight);
  const T* dpp = ptr_or_null<T>(dprenorm);
  T* dxp = dx.data_ptr<T>();
  for_each_row_chunk(M, num_chunks, N, parts_p, [&](int64_t r0, int64_t r1, acc_t* dw, acc_t* db) {
    scalar_backward_rows<T>(dyp, sp, mp, rp, wp, dpp, dxp, dw, db, r0, r1, N);
  });
}

std::vector<Tensor> layer_norm_bwd_cpu(const Tensor& dy, const Tensor& s, const Tensor& mean,
                                       const Tensor& rstd, const OptTensor& weight,
                                       const OptTensor& dprenorm, bool param_grads) {
  const int64_t M = s.size(0), N = s.size(1);
  Tensor dx = at::empty_like(s);
  Tensor dweight, dbias;
  if (M == 0 || N == 0) {
    if (param_grads) {
      dweight = at::zeros({N}, s.options());
      dbias = at::zeros({N}, s.options());
    }
    return {dx, dweight, dbias};
  }
  // Each chunk of rows owns one partial row of dweight/dbias: no atomics, no false sharing
  // (partials are N floats apart), and a deterministic sum for a given thread count.
  const int64_t grain = row_grain(N);
  const int64_t num_chunks =
      std::max<int64_t>(1, std::min<int64_t>((M + grain - 1) / grain, 2 * at::get_num_threads()));
  Tensor parts;  // [2, num_chunks, N]: dweight partials, then dbias partials
  if (param_grads) {
    parts = at::zeros({2, num_chunks, N},
                      s.options().dtype(s.scalar_type() == at::kDouble ? at::kDouble : at::kFloat));
  }
  const Tensor mean_d = mean.to(at::kDouble).contiguous();
  const Tensor rstd_d = rstd.to(at::kDouble).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "layer_norm_bwd_cpu", [&] {
    backward_impl<scalar_t>(dy, s, mean_d, rstd_d, weight, dprenorm, dx, parts, num_chunks);
  });
  if (parts.defined()) {
    const Tensor total = parts.sum(1);  // [2, N]
    dweight = total[0].to(s.scalar_type());
    dbias = total[1].to(s.scalar_type());
  }
  return {dx, dweight, dbias};
}

}  // namespace

MMEXT_REGISTER_IMPL(layer_norm_fwd, CPU, layer_norm_fwd_cpu)
MMEXT_REGISTER_IMPL(layer_norm_bwd, CPU, layer_norm_bwd_cpu)
