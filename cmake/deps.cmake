# Dependency probes. Required: cJSON, Oniguruma. Optional (AUTO|ON|OFF): OpenMP, CUDA, Poppler
# glib + cairo (PDF), libjpeg-turbo (JPEG), libpng (PNG), libheif (HEIF), FFmpeg (video and other
# still formats).
# Each optional dependency sets NANOVL_HAVE_<X> and a one-line reason for the summary.
find_package(PkgConfig REQUIRED)

pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson)
pkg_check_modules(ONIG REQUIRED IMPORTED_TARGET oniguruma)

# nanovl_optional(NAME MODE FOUND_VAR REASON_IF_MISSING)
macro(nanovl_resolve name found detail)
  if(NANOVL_${name} STREQUAL "OFF")
    set(NANOVL_HAVE_${name} OFF)
    set(NANOVL_WHY_${name} "OFF (disabled)")
  elseif(${found})
    set(NANOVL_HAVE_${name} ON)
    set(NANOVL_WHY_${name} "ON (${detail})")
  elseif(NANOVL_${name} STREQUAL "ON")
    message(FATAL_ERROR "NANOVL_${name}=ON but the dependency was not found")
  else()
    set(NANOVL_HAVE_${name} OFF)
    set(NANOVL_WHY_${name} "OFF (not found)")
  endif()
endmacro()

if(NOT NANOVL_OPENMP STREQUAL "OFF")
  find_package(OpenMP COMPONENTS C)
endif()
nanovl_resolve(OPENMP OpenMP_C_FOUND "OpenMP ${OpenMP_C_VERSION}")

if(NOT NANOVL_PDF STREQUAL "OFF")
  pkg_check_modules(POPPLER IMPORTED_TARGET poppler-glib cairo)
endif()
nanovl_resolve(PDF POPPLER_FOUND "poppler-glib ${POPPLER_poppler-glib_VERSION}")

if(NOT NANOVL_JPEG STREQUAL "OFF")
  pkg_check_modules(TURBOJPEG IMPORTED_TARGET libturbojpeg)
endif()
nanovl_resolve(JPEG TURBOJPEG_FOUND "libturbojpeg ${TURBOJPEG_VERSION}")

if(NOT NANOVL_PNG STREQUAL "OFF")
  pkg_check_modules(PNG IMPORTED_TARGET libpng)
endif()
nanovl_resolve(PNG PNG_FOUND "libpng ${PNG_VERSION}")

if(NOT NANOVL_WEBP STREQUAL "OFF")
  # libwebpdemux (in libwebp-dev too): an animated WebP's first frame, as Pillow opens it
  pkg_check_modules(WEBP IMPORTED_TARGET libwebp libwebpdemux)
endif()
nanovl_resolve(WEBP WEBP_FOUND "libwebp ${WEBP_VERSION}")

# libheif (Debian's libheif-dev, with libde265): HEIF/HEIC stills, the iPhone's photos
if(NOT NANOVL_HEIF STREQUAL "OFF")
  pkg_check_modules(HEIF IMPORTED_TARGET libheif)
endif()
nanovl_resolve(HEIF HEIF_FOUND "libheif ${HEIF_VERSION}")

if(NOT NANOVL_VIDEO STREQUAL "OFF")
  pkg_check_modules(FFMPEG IMPORTED_TARGET libavformat libavcodec libavutil libswscale)
endif()
nanovl_resolve(VIDEO FFMPEG_FOUND "libavformat ${FFMPEG_libavformat_VERSION}")

# oneDNN (Debian's libdnnl-dev): the many-row BF16 matmuls on AMX / AVX512-BF16 (issue 18).
if(NOT NANOVL_DNNL STREQUAL "OFF")
  find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.h)
  find_library(DNNL_LIBRARY dnnl)
  if(DNNL_INCLUDE_DIR AND DNNL_LIBRARY)
    set(DNNL_FOUND TRUE)
    file(STRINGS ${DNNL_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h _dnnl_v REGEX "#define DNNL_VERSION_(MAJOR|MINOR|PATCH) ")
    string(REGEX REPLACE "[^0-9;]" "" _dnnl_v "${_dnnl_v}")
    string(REPLACE ";" "." DNNL_VERSION "${_dnnl_v}")
  endif()
endif()
nanovl_resolve(DNNL DNNL_FOUND "oneDNN ${DNNL_VERSION}")

# CUDA: AUTO enables it when nvcc is found (check_language), never needs a GPU at build time.
set(NANOVL_HAVE_CUDA OFF)
set(NANOVL_WHY_CUDA "OFF (disabled)")
if(NOT NANOVL_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(NANOVL_HAVE_CUDA ON)
    set(NANOVL_WHY_CUDA "ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, arch ${CMAKE_CUDA_ARCHITECTURES})")
  elseif(NANOVL_CUDA STREQUAL "ON")
    message(FATAL_ERROR "NANOVL_CUDA=ON but nvcc was not found")
  else()
    set(NANOVL_WHY_CUDA "OFF (nvcc not found)")
  endif()
endif()
