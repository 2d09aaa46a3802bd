// VFLASH_HD: functions that both the kernels and host code (tests, launches) call.
#pragma once

#ifndef VFLASH_HD
#if defined(__CUDACC__)
#define VFLASH_HD __host__ __device__ __forceinline__
#else
#define VFLASH_HD inline
#endif
#endif
