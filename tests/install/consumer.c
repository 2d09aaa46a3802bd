/* Consumer of the installed C ABI: one varlen attention call on host tensors
 * (the CPU reference; a GPU is not needed), checked against a direct
 * computation. Exit status 0 on success. */
#include <math.h>
#include <stdio.h>

#include <vflash/vflash.h>

enum { kHeadsQ = 4, kHeadsK = 2, kDim = 8, kTotal = 5 };

int main(void) {
  static const int32_t cu_seqlens[] = {0, 2, 5}; /* two sequences: 2 and 3 tokens */
  static float q[kTotal][kHeadsQ][kDim], k[kTotal][kHeadsK][kDim], v[kTotal][kHeadsK][kDim];
  static float out[kTotal][kHeadsQ][kDim];
  for (int t = 0; t < kTotal; ++t)
    for (int d = 0; d < kDim; ++d) {
      for (int h = 0; h < kHeadsQ; ++h) q[t][h][d] = (float)sin(0.3 * (t * 31 + h * 7 + d));
      for (int h = 0; h < kHeadsK; ++h) {
        k[t][h][d] = (float)cos(0.2 * (t * 17 + h * 5 + d));
        v[t][h][d] = (float)sin(0.1 * (t * 13 + h * 3 + d) + 1.0);
      }
    }

  vflash_varlen_args a;
  vflash_varlen_args_init(&a);
  const int64_t q_shape[3] = {kTotal, kHeadsQ, kDim}, kv_shape[3] = {kTotal, kHeadsK, kDim}, cu_shape[1] = {3};
  if (vflash_tensor_make(&a.q, q, VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, 3, q_shape) ||
      vflash_tensor_make(&a.k, k, VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, 3, kv_shape) ||
      vflash_tensor_make(&a.v, v, VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, 3, kv_shape) ||
      vflash_tensor_make(&a.out, out, VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, 3, q_shape) ||
      vflash_tensor_make(&a.cu_seqlens_q, (void*)cu_seqlens, VFLASH_DTYPE_INT32, VFLASH_DEVICE_CPU, 1, cu_shape) ||
      vflash_tensor_make(&a.cu_seqlens_k, (void*)cu_seqlens, VFLASH_DTYPE_INT32, VFLASH_DEVICE_CPU, 1, cu_shape)) {
    fprintf(stderr, "vflash_tensor_make: %s\n", vflash_last_error());
    return 1;
  }
  a.max_seqlen_q = a.max_seqlen_k = 3;
  a.causal = 1;
  const char* kernel = "";
  if (vflash_varlen_kernel_name(&a, &kernel) != VFLASH_OK || vflash_varlen_fwd(&a) != VFLASH_OK) {
    fprintf(stderr, "vflash: %s\n", vflash_last_error());
    return 1;
  }

  double max_err = 0;
  for (int s = 0; s < 2; ++s)
    for (int i = cu_seqlens[s]; i < cu_seqlens[s + 1]; ++i)
      for (int h = 0; h < kHeadsQ; ++h) {
        const int hk = h / (kHeadsQ / kHeadsK);
        double p[3], m = -INFINITY, sum = 0, o[kDim] = {0};
        const int n = i - cu_seqlens[s] + 1; /* causal: keys up to the query */
        for (int j = 0; j < n; ++j) {
          double dot = 0;
          for (int d = 0; d < kDim; ++d) dot += (double)q[i][h][d] * k[cu_seqlens[s] + j][hk][d];
          p[j] = dot / sqrt((double)kDim);
          if (p[j] > m) m = p[j];
        }
        for (int j = 0; j < n; ++j) sum += p[j] = exp(p[j] - m);
        for (int j = 0; j < n; ++j)
          for (int d = 0; d < kDim; ++d) o[d] += p[j] / sum * v[cu_seqlens[s] + j][hk][d];
        for (int d = 0; d < kDim; ++d) {
          const double err = fabs(o[d] - out[i][h][d]);
          if (!(err <= max_err)) max_err = isnan(err) ? INFINITY : err;
        }
      }
  printf("vflash %s (C): kernel %s, max error %.2e\n", vflash_version(), kernel, max_err);
  return max_err < 1e-5 ? 0 : 1;
}
