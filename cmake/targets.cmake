# Which CUDA targets each kernel is compiled for. This file is data: the
# capabilities each kernel family is written for. arch.cpp owns the rules of
# what runs where; nothing here compares capability numbers.
#
# VFLASH_CUDA_ARCHS narrows the build (e.g. -DVFLASH_CUDA_ARCHS=90 for a quick
# Hopper build); "all" (default) emits every target vflash claims.

set(VFLASH_CUDA_ARCHS "all" CACHE STRING "Capabilities to emit machine code for (e.g. 80;90), or all")

# Portable SIMT fallback: machine code for every family plus PTX for the oldest
# capability, which the driver JIT-compiles on GPUs not yet made.
set(_simt_sass 75 80 86 89 90 100 110 120)
set(_simt_ptx 75)
# Warp-level tensor-core kernel (mma.sync m16n8k16 needs 8.0+).
set(_mma_sass 80 86 89 90 100 110 120)
set(_mma_ptx 80)
# Hopper-only kernel: arch-specific sm_90a code.
set(_hopper_sass_a 90)

function(_vflash_pick out)
  if(VFLASH_CUDA_ARCHS STREQUAL "all")
    set(${out} ${ARGN} PARENT_SCOPE)
  else()
    set(picked)
    foreach(a IN LISTS ARGN)
      if(a IN_LIST VFLASH_CUDA_ARCHS)
        list(APPEND picked ${a})
      endif()
    endforeach()
    set(${out} ${picked} PARENT_SCOPE)
  endif()
endfunction()

# vflash_kernel_targets(<prefix> SASS <caps...> PTX <caps...> SASS_A <caps...>)
# sets <prefix>_GENCODE (nvcc flags) and <prefix>_TARGETS ("sm_80;compute_80").
# In a narrowed build PTX is emitted only where that capability's machine code is.
function(vflash_kernel_targets prefix)
  cmake_parse_arguments(K "" "" "SASS;PTX;SASS_A" ${ARGN})
  _vflash_pick(sass ${K_SASS})
  _vflash_pick(ptx ${K_PTX})
  _vflash_pick(sass_a ${K_SASS_A})
  set(flags)
  set(names)
  foreach(a IN LISTS sass)
    list(APPEND flags "-gencode=arch=compute_${a},code=sm_${a}")
    list(APPEND names "sm_${a}")
  endforeach()
  foreach(a IN LISTS sass_a)
    list(APPEND flags "-gencode=arch=compute_${a}a,code=sm_${a}a")
    list(APPEND names "sm_${a}a")
  endforeach()
  foreach(a IN LISTS ptx)
    list(APPEND flags "-gencode=arch=compute_${a},code=compute_${a}")
    list(APPEND names "compute_${a}")
  endforeach()
  if(VFLASH_PTX_ONLY AND ptx)
    # Proof build for unseen GPUs: only PTX, no machine code.
    set(flags)
    set(names)
    foreach(a IN LISTS ptx)
      list(APPEND flags "-gencode=arch=compute_${a},code=compute_${a}")
      list(APPEND names "compute_${a}")
    endforeach()
  endif()
  set(${prefix}_GENCODE ${flags} PARENT_SCOPE)
  string(REPLACE ";" "\\;" names_escaped "${names}")
  set(${prefix}_TARGETS "${names}" PARENT_SCOPE)
endfunction()

option(VFLASH_PTX_ONLY "Emit only PTX for the portable kernels (JIT proof build)" OFF)

vflash_kernel_targets(VFLASH_SIMT SASS ${_simt_sass} PTX ${_simt_ptx})
vflash_kernel_targets(VFLASH_MMA SASS ${_mma_sass} PTX ${_mma_ptx})
vflash_kernel_targets(VFLASH_HOPPER SASS_A ${_hopper_sass_a})
