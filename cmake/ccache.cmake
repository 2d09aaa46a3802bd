# Compiler cache. Every build of this tree (scripts/setup.sh, scripts/test.sh,
# `pip install .`, a plain `cmake -B build`) compiles through ccache with the
# same settings as scripts/env.sh: one cache in ~/.cache/vflash-ccache, and
# paths below the source tree hashed relative to it, so that build trees at the
# same depth (build, build-test, build-python-<tag>) share every object.
# The settings are baked into the launcher at configure time: a later `ninja`
# from a shell without scripts/env.sh hits the same cache.
option(VFLASH_CCACHE "Compile through ccache when it is installed" ON)
if(VFLASH_CCACHE)
  find_program(VFLASH_CCACHE_PROGRAM ccache)
endif()
if(VFLASH_CCACHE AND VFLASH_CCACHE_PROGRAM)
  if(DEFINED ENV{CCACHE_DIR})
    set(_vflash_ccache_dir "$ENV{CCACHE_DIR}")
  else()
    set(_vflash_ccache_dir "$ENV{HOME}/.cache/vflash-ccache")
  endif()
  if(DEFINED ENV{CCACHE_MAXSIZE})
    set(_vflash_ccache_max "$ENV{CCACHE_MAXSIZE}")
  else()
    set(_vflash_ccache_max 8G)
  endif()
  set(_vflash_ccache ${CMAKE_COMMAND} -E env "CCACHE_DIR=${_vflash_ccache_dir}"
      "CCACHE_BASEDIR=${CMAKE_CURRENT_SOURCE_DIR}" "CCACHE_MAXSIZE=${_vflash_ccache_max}"
      ${VFLASH_CCACHE_PROGRAM})
  foreach(lang C CXX CUDA)
    # A launcher of the caller's own is kept unless it is plain ccache (as
    # scripts/env.sh's cmake_configure passes): then ours adds the settings.
    get_filename_component(_vflash_given "${CMAKE_${lang}_COMPILER_LAUNCHER}" NAME)
    if(NOT CMAKE_${lang}_COMPILER_LAUNCHER OR _vflash_given STREQUAL "ccache")
      set(CMAKE_${lang}_COMPILER_LAUNCHER ${_vflash_ccache})
    endif()
  endforeach()
  message(STATUS "vflash: compiling through ccache (${_vflash_ccache_dir})")
endif()
