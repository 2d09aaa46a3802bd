# Install rules and the relocatable CMake package (included by the top-level
# CMakeLists.txt). Every installed path is relative to the install prefix, so
# `cmake --install <build> --prefix P` may be moved or copied elsewhere.
include(CMakePackageConfigHelpers)

set(VFLASH_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/vflash)

install(TARGETS vflash EXPORT vflashTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The static library's link interface names CUDA::cudart_static: its own export
# set, loaded by vflashConfig.cmake after find_dependency(CUDAToolkit).
install(TARGETS vflash_static EXPORT vflashStaticTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS vflash_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/vflash DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

install(EXPORT vflashTargets NAMESPACE vflash:: DESTINATION ${VFLASH_INSTALL_CMAKEDIR})
install(EXPORT vflashStaticTargets NAMESPACE vflash:: DESTINATION ${VFLASH_INSTALL_CMAKEDIR})
configure_package_config_file(cmake/vflashConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/package/vflashConfig.cmake
  INSTALL_DESTINATION ${VFLASH_INSTALL_CMAKEDIR})
# 0.x: a minor release may change the API.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/package/vflashConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/package/vflashConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/package/vflashConfigVersion.cmake
        DESTINATION ${VFLASH_INSTALL_CMAKEDIR})

# pkg-config: vflash (the shared library; Libs.private holds the static
# library's dependencies, for `pkg-config --static`) and vflash_static (links
# libvflash.a and the CUDA runtime into an otherwise dynamic program).
# ${pcfiledir} keeps them relocatable; the CUDA runtime is the toolkit's, by
# absolute path.
set(_vflash_up "")
string(REPLACE "/" ";" _vflash_parts "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
foreach(_part IN LISTS _vflash_parts)
  string(APPEND _vflash_up "/..")
endforeach()
set(VFLASH_PC_PREFIX "\${pcfiledir}${_vflash_up}")
set(VFLASH_PC_CUDA_LIBDIR "${CUDAToolkit_LIBRARY_DIR}")
foreach(pc vflash vflash_static)
  configure_file(cmake/${pc}.pc.in ${CMAKE_CURRENT_BINARY_DIR}/package/${pc}.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/package/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()
