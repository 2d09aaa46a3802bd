/*
 * vflash — variable-length (packed) FlashAttention, forward and backward.
 *
 * Stable C ABI. Every function returns a vflash_status; on failure a
 * human-readable message naming the offending argument and the rule it broke
 * is available from vflash_last_error() (thread-local, valid until the next
 * vflash call on the same thread).
 *
 * Conventions (FlashAttention's varlen layout):
 *   q    (total_q, heads_q, d)        k (total_k, heads_k, d)     v (total_k, heads_k, d_v)
 *   out  (total_q, heads_q, d_v)      lse (heads_q, total_q) float32, optional
 *   cu_seqlens_q / cu_seqlens_k: int32, length batch+1, prefix sums starting at 0,
 *   non-decreasing, last entry <= the tensor's token count (total_q / total_k).
 *   Rows of q past cu_seqlens_q[batch] belong to no sequence: out and lse are
 *   not written there (FlashAttention's rule: a caller's buffer keeps its
 *   contents; the Python package, where it allocates out / lse itself, returns
 *   those rows as rows that see no key: zeros, lse -inf).
 *   max_seqlen_q / max_seqlen_k: upper bounds of the sequence lengths (any value
 *   from the longest sequence up, even past the token count, is accepted).
 *   total_q and total_k (dense: batch * seqlen) are at most 2^31 - 1 - 1024.
 *   The dense entry point takes (batch, seqlen, heads, d) tensors and an optional
 *   lse of shape (batch, heads_q, seqlen_q).
 *   Strides are in elements; the last dimension must be contiguous (stride 1),
 *   and the layout must not alias (each stride covers the dimensions inside it).
 *   q/k/v/out pointers are 16-byte aligned and their token/head/batch strides
 *   multiples of 16 bytes; lse and cu_seqlens are 4-byte aligned and contiguous;
 *   a null data pointer is accepted only for a tensor with no elements.
 *   cu_seqlens on a CUDA device are trusted (never read on the host): pass the
 *   *_host copies to have their contents validated.
 *   q, k, v and out share one dtype (fp16 or bf16 on the GPU; fp16, bf16 or
 *   fp32 on the CPU reference). heads_q % heads_k == 0 (GQA / MQA).
 *   Causal masking is aligned bottom-right: query i of a sequence with lengths
 *   (Lq, Lk) sees key j iff j <= i + Lk - Lq. A window (left, right) keeps keys
 *   with i + Lk - Lq - left <= j <= i + Lk - Lq + right; -1 means unbounded,
 *   and so does any bound at least as long as every sequence (right >=
 *   max_seqlen_q, left >= max_seqlen_k, e.g. INT32_MAX).
 *   softcap > 0 replaces each score s = scale * q.k by softcap * tanh(s / softcap).
 *   A query row that sees no key (seqlen_k = 0, or masked) produces zeros and
 *   lse = -inf, the log of an empty sum; FlashAttention returns +inf there (a
 *   convention of its backward pass). vflash returns -inf in every entry point,
 *   C, C++ and Python, so that combining partial results by their lse (split
 *   keys, cascades) needs no special case.
 *
 * Tensors live either all on the host (device = VFLASH_DEVICE_CPU: the CPU
 * reference runs, synchronously) or all on one CUDA device (the call is
 * asynchronous on `stream`, never synchronises the device, never allocates:
 * the caller passes any workspace, sized by vflash_*_workspace_size).
 */
#ifndef VFLASH_VFLASH_H
#define VFLASH_VFLASH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define VFLASH_API __declspec(dllexport)
#else
#define VFLASH_API __attribute__((visibility("default")))
#endif

/* Version of this ABI; bumped only by incompatible changes. */
#define VFLASH_ABI_VERSION 1

typedef enum vflash_status {
  VFLASH_OK = 0,
  VFLASH_ERROR_INVALID_ARGUMENT = 1, /* an argument breaks a documented rule */
  VFLASH_ERROR_UNSUPPORTED = 2,      /* valid, but no kernel of this build serves it */
  VFLASH_ERROR_NO_DEVICE = 3,        /* CUDA tensors given but no usable GPU */
  VFLASH_ERROR_CUDA = 4,             /* a CUDA runtime call or launch failed */
  VFLASH_ERROR_INTERNAL = 5
} vflash_status;

typedef enum vflash_dtype {
  VFLASH_DTYPE_FP16 = 0,
  VFLASH_DTYPE_BF16 = 1,
  VFLASH_DTYPE_FP32 = 2,
  VFLASH_DTYPE_INT32 = 3
} vflash_dtype;

#define VFLASH_DEVICE_CPU (-1)

/* A strided view of memory (DLPack-like). Unused dimensions are ignored. */
typedef struct vflash_tensor {
  void* data;          /* NULL marks an absent optional tensor */
  vflash_dtype dtype;
  int32_t device;      /* VFLASH_DEVICE_CPU or a CUDA device ordinal */
  int32_t ndim;
  int64_t shape[4];
  int64_t stride[4];   /* in elements */
} vflash_tensor;

/* Packed variable-length attention. Set struct_size = sizeof(vflash_varlen_args)
 * (vflash_varlen_args_init does it and fills the defaults). */
typedef struct vflash_varlen_args {
  size_t struct_size;
  vflash_tensor q, k, v;
  vflash_tensor out;
  vflash_tensor lse;              /* optional: float32 (heads_q, total_q); -inf for rows without keys */
  vflash_tensor cu_seqlens_q;     /* int32 (batch+1,), on the tensors' device */
  vflash_tensor cu_seqlens_k;
  const int32_t* cu_seqlens_q_host; /* optional host copies: validated in full when given */
  const int32_t* cu_seqlens_k_host;
  int32_t max_seqlen_q, max_seqlen_k; /* upper bounds of the sequence lengths */
  float softmax_scale;            /* 0 = default 1/sqrt(d) */
  int32_t causal;                 /* nonzero: bottom-right causal mask */
  int32_t window_left, window_right; /* -1 = unbounded */
  float softcap;                  /* 0 = off */
  void* workspace;                /* device memory, >= the queried size, may be NULL if 0 */
  size_t workspace_bytes;
  void* stream;                   /* cudaStream_t; NULL = default stream */
  /* Rows of out past cu_seqlens_q[batch] belong to no sequence. 0 (FlashAttention's rule): they
   * are not written. Nonzero: they are written as rows that see no key, out 0 and lse -inf, on
   * the stream with the call (no host synchronisation), for an out the caller allocated for it.
   * Added after ABI version 1's first release: a struct_size that ends before it reads as 0. */
  int32_t zero_rows_past_end;
} vflash_varlen_args;

/* Dense (batch, seqlen, heads, d) attention; lse is float32 (batch, heads_q, seqlen_q). */
typedef struct vflash_dense_args {
  size_t struct_size;
  vflash_tensor q, k, v;
  vflash_tensor out;
  vflash_tensor lse;
  float softmax_scale;
  int32_t causal;
  int32_t window_left, window_right;
  float softcap;
  void* workspace;
  size_t workspace_bytes;
  void* stream;
} vflash_dense_args;

/* Backward of packed variable-length attention: the gradients dq, dk, dv of a
 * loss whose gradient with respect to the forward's out is dout. q, k, v,
 * cu_seqlens, max_seqlen, softmax_scale, causal, window and softcap are the
 * forward call's, and follow its rules; out and lse are what that forward
 * returned (lse is required). Layouts:
 *   dout (total_q, heads_q, d_v)   dq (total_q, heads_q, d)
 *   dk   (total_k, heads_k, d)     dv (total_k, heads_k, d_v)
 * all of q's dtype and device, with the alignment and stride rules of q.
 * GQA / MQA: dk and dv of a KV head sum the gradients of every query head of
 * its group. Every row of dq, dk and dv is written: rows past
 * cu_seqlens_*[batch] and keys no query sees get zeros, and so do query rows
 * that see no key (lse -inf). The GPU accumulates in fp32; deterministic = 0
 * lets it add dq with floating-point atomics (results may differ in the last
 * bits run to run), nonzero makes repeated calls bit-identical. The CPU
 * reference is exact in float64 (it recomputes the softmax from q and k) and
 * always deterministic. CUDA calls need the workspace that
 * vflash_varlen_bwd_workspace_size reports (fp32 dq accumulators and the row
 * sums of dout * out).
 * Set struct_size = sizeof(vflash_varlen_bwd_args) (vflash_varlen_bwd_args_init
 * does it and fills the defaults). */
typedef struct vflash_varlen_bwd_args {
  size_t struct_size;
  vflash_tensor dout;             /* gradient of the loss with respect to out */
  vflash_tensor q, k, v;
  vflash_tensor out;              /* the forward's out */
  vflash_tensor lse;              /* the forward's lse: float32 (heads_q, total_q), required */
  vflash_tensor dq, dk, dv;       /* written */
  vflash_tensor cu_seqlens_q;     /* int32 (batch+1,), on the tensors' device */
  vflash_tensor cu_seqlens_k;
  const int32_t* cu_seqlens_q_host; /* optional host copies: validated in full when given */
  const int32_t* cu_seqlens_k_host;
  int32_t max_seqlen_q, max_seqlen_k; /* upper bounds of the sequence lengths */
  float softmax_scale;            /* 0 = default 1/sqrt(d) */
  int32_t causal;                 /* nonzero: bottom-right causal mask */
  int32_t window_left, window_right; /* -1 = unbounded */
  float softcap;                  /* 0 = off */
  int32_t deterministic;          /* nonzero: bit-identical results run to run */
  void* workspace;                /* device memory, >= the queried size, may be NULL if 0 */
  size_t workspace_bytes;
  void* stream;                   /* cudaStream_t; NULL = default stream */
} vflash_varlen_bwd_args;

VFLASH_API void vflash_varlen_args_init(vflash_varlen_args* args);
VFLASH_API void vflash_dense_args_init(vflash_dense_args* args);
VFLASH_API void vflash_varlen_bwd_args_init(vflash_varlen_bwd_args* args);

/* Fill a contiguous-row tensor descriptor (row-major, last dim stride 1). */
VFLASH_API vflash_status vflash_tensor_make(vflash_tensor* t, void* data, vflash_dtype dtype,
                                            int32_t device, int32_t ndim, const int64_t* shape);

VFLASH_API vflash_status vflash_varlen_fwd(const vflash_varlen_args* args);
VFLASH_API vflash_status vflash_dense_fwd(const vflash_dense_args* args);
VFLASH_API vflash_status vflash_varlen_bwd(const vflash_varlen_bwd_args* args);

/* Device workspace the call needs (0 for most calls). Validates the arguments. */
VFLASH_API vflash_status vflash_varlen_workspace_size(const vflash_varlen_args* args, size_t* bytes);
VFLASH_API vflash_status vflash_dense_workspace_size(const vflash_dense_args* args, size_t* bytes);
VFLASH_API vflash_status vflash_varlen_bwd_workspace_size(const vflash_varlen_bwd_args* args, size_t* bytes);

/* Name of the kernel the call would run (validates; "cpu_reference" for host tensors). */
VFLASH_API vflash_status vflash_varlen_kernel_name(const vflash_varlen_args* args, const char** name);
VFLASH_API vflash_status vflash_dense_kernel_name(const vflash_dense_args* args, const char** name);
VFLASH_API vflash_status vflash_varlen_bwd_kernel_name(const vflash_varlen_bwd_args* args, const char** name);

/* Thread-local message of the last failure on this thread ("" after success). */
VFLASH_API const char* vflash_last_error(void);
VFLASH_API const char* vflash_status_string(vflash_status status);

/* Testing and diagnosis. Forcing a kernel makes dispatch consider only that
 * kernel for calls of its pass (forward or backward; the other pass
 * dispatches as usual; NULL clears); pretending a capability ("10.3", "sm_121", NULL clears)
 * makes dispatch decide as if the device had it. The environment variables
 * VFLASH_FORCE_KERNEL and VFLASH_PRETEND_CC do the same at start-up. */
VFLASH_API vflash_status vflash_force_kernel(const char* name);
VFLASH_API vflash_status vflash_pretend_capability(const char* capability);

/* JSON report of `vflash doctor` into buf (truncated to len, NUL-terminated);
 * *needed receives the full length + 1. */
VFLASH_API vflash_status vflash_doctor_json(char* buf, size_t len, size_t* needed);

VFLASH_API const char* vflash_version(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* VFLASH_VFLASH_H */
