# FindTensorRT.cmake: TensorRT *headers* (the edge_committee plugin library links no TensorRT library;
# TensorRT's registry loads it with loadLibrary and hands it a logger finder).
#
# Input (CMake variable or environment variable):
#   TENSORRT_ROOT  a TensorRT install or tarball root, or a folder that holds NvInferRuntime.h
#                  (e.g. the include/tensorrt folder of the kernel-lens wheel).
# Without TENSORRT_ROOT the usual places are searched, JetPack's /usr/include/aarch64-linux-gnu included.
#
# Output:
#   TensorRT_FOUND, TensorRT_INCLUDE_DIR, TensorRT_VERSION (MAJOR.MINOR.PATCH),
#   TensorRT_VERSION_MAJOR, TensorRT_VERSION_MINOR, and the INTERFACE target TensorRT::Headers.

set(_ec_trt_hints)
if(TENSORRT_ROOT)
    list(APPEND _ec_trt_hints "${TENSORRT_ROOT}")
endif()
if(DEFINED ENV{TENSORRT_ROOT} AND NOT "$ENV{TENSORRT_ROOT}" STREQUAL "")
    list(APPEND _ec_trt_hints "$ENV{TENSORRT_ROOT}")
endif()

if(_ec_trt_hints)
    # An explicit root wins over whatever the system has.
    find_path(TensorRT_INCLUDE_DIR NAMES NvInferRuntime.h
        HINTS ${_ec_trt_hints}
        PATH_SUFFIXES include include/tensorrt tensorrt
        NO_DEFAULT_PATH)
endif()
find_path(TensorRT_INCLUDE_DIR NAMES NvInferRuntime.h
    PATHS /usr/include/aarch64-linux-gnu /usr/include/x86_64-linux-gnu /usr/include
          /usr/local/tensorrt/include /usr/local/TensorRT/include /opt/tensorrt/include /usr/src/tensorrt/include)

set(TensorRT_VERSION "")
if(TensorRT_INCLUDE_DIR AND EXISTS "${TensorRT_INCLUDE_DIR}/NvInferVersion.h")
    file(STRINGS "${TensorRT_INCLUDE_DIR}/NvInferVersion.h" _ec_trt_version_lines
        REGEX "^#define[ \t]+(NV_TENSORRT|TRT)_(MAJOR|MINOR|PATCH)(_ENTERPRISE)?[ \t]+[0-9]+")
    foreach(_part MAJOR MINOR PATCH)
        set(TensorRT_VERSION_${_part} "")
        foreach(_line IN LISTS _ec_trt_version_lines)
            # TensorRT <= 10.10 writes NV_TENSORRT_MAJOR 10; later releases TRT_MAJOR_ENTERPRISE 10.
            if(_line MATCHES "^#define[ \t]+(NV_TENSORRT_${_part}|TRT_${_part}_ENTERPRISE)[ \t]+([0-9]+)")
                set(TensorRT_VERSION_${_part} "${CMAKE_MATCH_2}")
            endif()
        endforeach()
    endforeach()
    if(NOT TensorRT_VERSION_MAJOR STREQUAL "")
        set(TensorRT_VERSION "${TensorRT_VERSION_MAJOR}.${TensorRT_VERSION_MINOR}.${TensorRT_VERSION_PATCH}")
    endif()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(TensorRT
    REQUIRED_VARS TensorRT_INCLUDE_DIR
    VERSION_VAR TensorRT_VERSION)

if(TensorRT_FOUND AND NOT TARGET TensorRT::Headers)
    add_library(TensorRT::Headers INTERFACE IMPORTED)
    # SYSTEM: TensorRT's own headers warn about their deprecated declarations.
    set_target_properties(TensorRT::Headers PROPERTIES
        INTERFACE_INCLUDE_DIRECTORIES "${TensorRT_INCLUDE_DIR}"
        INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${TensorRT_INCLUDE_DIR}")
endif()
mark_as_advanced(TensorRT_INCLUDE_DIR)
