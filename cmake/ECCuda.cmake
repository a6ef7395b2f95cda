# ECCuda.cmake: decide whether to build CUDA code and for which architectures.
#
# Input:  EC_BUILD_CUDA (ON / OFF / AUTO), EC_CUDA_ARCHS (CMake or environment variable, e.g. "87;90"
#         or "87,90"; default: those of 72;87;90 that the installed nvcc can compile for).
# Output: EC_WITH_CUDA (ON/OFF), CMAKE_CUDA_ARCHITECTURES, the CUDA language enabled and CUDAToolkit found.
#
# Jetson Xavier is sm_72, Orin sm_87, H100 sm_90. CUDA 13 removed sm_72 (and everything below sm_75), so
# with nvcc 13 the default list is 87;90 and the configure log says why 72 was dropped.

set(EC_DEFAULT_CUDA_ARCHS 72 87 90)
set(EC_WITH_CUDA OFF)

if(NOT EC_BUILD_CUDA STREQUAL "OFF")
    include(CheckLanguage)
    check_language(CUDA)
    if(NOT CMAKE_CUDA_COMPILER)
        if(EC_BUILD_CUDA STREQUAL "ON")
            message(FATAL_ERROR "edge_committee: EC_BUILD_CUDA=ON but no CUDA compiler (nvcc) was found; "
                "put nvcc on PATH or set CMAKE_CUDA_COMPILER")
        endif()
        message(STATUS "edge_committee: no CUDA compiler found: building without the CUDA gate")
    else()
        # Which virtual architectures does this nvcc know?
        execute_process(COMMAND "${CMAKE_CUDA_COMPILER}" --list-gpu-arch
            OUTPUT_VARIABLE _ec_nvcc_archs RESULT_VARIABLE _ec_nvcc_rc ERROR_QUIET)
        set(_ec_supported)
        if(_ec_nvcc_rc EQUAL 0)
            string(REGEX MATCHALL "compute_[0-9]+" _ec_nvcc_archs "${_ec_nvcc_archs}")
            foreach(_a IN LISTS _ec_nvcc_archs)
                string(REPLACE "compute_" "" _a "${_a}")
                list(APPEND _ec_supported "${_a}")
            endforeach()
        endif()

        set(_ec_requested "${EC_CUDA_ARCHS}")
        if(_ec_requested STREQUAL "" AND DEFINED ENV{EC_CUDA_ARCHS})
            set(_ec_requested "$ENV{EC_CUDA_ARCHS}")
        endif()
        set(_ec_explicit ON)
        if(_ec_requested STREQUAL "")
            set(_ec_requested "${EC_DEFAULT_CUDA_ARCHS}")
            set(_ec_explicit OFF)
        endif()
        string(REPLACE "," ";" _ec_requested "${_ec_requested}")
        string(REPLACE " " ";" _ec_requested "${_ec_requested}")

        set(_ec_kept)
        set(_ec_dropped)
        foreach(_a IN LISTS _ec_requested)
            string(REGEX REPLACE "^sm_|^compute_" "" _a "${_a}")
            if(_a STREQUAL "")
                continue()
            endif()
            if(NOT _ec_supported OR _a IN_LIST _ec_supported)
                list(APPEND _ec_kept "${_a}")
            else()
                list(APPEND _ec_dropped "${_a}")
            endif()
        endforeach()
        list(REMOVE_DUPLICATES _ec_kept)

        if(_ec_dropped)
            message(STATUS "edge_committee: CUDA architectures dropped: ${_ec_dropped} -- not supported by "
                "${CMAKE_CUDA_COMPILER} (its --list-gpu-arch: ${_ec_supported}). "
                "CUDA 13 removed sm_72 (Jetson Xavier): build with CUDA 12.x (JetPack 6) for it.")
            if(_ec_explicit AND EC_BUILD_CUDA STREQUAL "ON" AND NOT _ec_kept)
                message(FATAL_ERROR "edge_committee: none of EC_CUDA_ARCHS=${_ec_requested} is supported by nvcc")
            endif()
        endif()

        if(NOT _ec_kept)
            if(EC_BUILD_CUDA STREQUAL "ON")
                message(FATAL_ERROR "edge_committee: no requested CUDA architecture is supported by nvcc")
            endif()
            message(STATUS "edge_committee: no usable CUDA architecture: building without the CUDA gate")
        else()
            # Real SASS for every architecture, plus PTX of the newest for forward compatibility.
            list(SORT _ec_kept COMPARE NATURAL)
            list(GET _ec_kept -1 _ec_newest)
            set(_ec_cmake_archs)
            foreach(_a IN LISTS _ec_kept)
                if(_a STREQUAL _ec_newest)
                    list(APPEND _ec_cmake_archs "${_a}")
                else()
                    list(APPEND _ec_cmake_archs "${_a}-real")
                endif()
            endforeach()
            set(CMAKE_CUDA_ARCHITECTURES "${_ec_cmake_archs}")
            message(STATUS "edge_committee: CUDA architectures: ${_ec_kept} (CMAKE_CUDA_ARCHITECTURES=${_ec_cmake_archs})")
            enable_language(CUDA)
            find_package(CUDAToolkit REQUIRED)
            set(EC_WITH_CUDA ON)
        endif()
    endif()
endif()
