/* A CUDA emulator for tests: the CUDA backend's own sources (kernels/cuda/ sources, launches rewritten
 * by tests/cuda_emu/cu2cpp.c) compiled by the host C++ compiler against these headers run on the
 * CPU, so that the never-run kernels' logic (indexing, reductions, barriers, warp shuffles,
 * layouts handed to cuBLAS, graph capture bookkeeping) is checked by the GPU tests here, before a
 * device is at hand. What it does not check: timing, the memory model, real cuBLAS's algorithms,
 * the hardware's rounding of fused operations (it compiles with -ffp-contract=off).
 *
 * Execution: a launch runs its blocks one after another, the last first (a kernel that counts on
 * another block's writes, which a device runs in any order, fails); the threads of a block run as fibers
 * (a stack switch, no system call) that switch only at __syncthreads and warp shuffles, warp by
 * warp, each warp as far as it goes before the barrier (NVL_CUDA_EMU_ORDER=reverse: warps and
 * lanes last first, blocks first first; see emu.cpp's schedule), so shared memory (`__shared__`
 * becomes a static in one section) is the block's while it runs; it is filled with 0xff bytes
 * before each block. Device memory is host memory, exactly the bytes asked and
 * NaN-filled when allocated (so ASan sees a kernel's out-of-bounds accesses, and a read of memory
 * nobody wrote spreads NaN); streams run in order, synchronously; a stream capture records the
 * launches and copies as closures, which a graph launch replays.
 */
#ifndef TESTS_CUDA_EMU_H
#define TESTS_CUDA_EMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
#include <stdio.h>

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>
#define EMU_CHECK_DEVICE_PTR(op, what, p) emu::check_device_ptr(op, what, p)
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __align__(n) /* (dynamic shared memory is 128-byte aligned here) */
#define __restrict__ __restrict
/* every __shared__ variable in one section, which the scheduler fills with 0xff bytes (NaN in
 * every float format, -1 in integers) before each block: a block reading shared memory it did
 * not write sees garbage, as on a device, not the previous block's values */
#define __shared__ static __attribute__((section("emu_shared")))
#define __constant__ static

// ---------------------------------------------------------------------------
// runtime types

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidDevice = 101,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorUnknown = 999,
} cudaError_t;

typedef enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
} cudaMemcpyKind;

typedef enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
} cudaStreamCaptureMode;

typedef enum cudaDataType_t {
    CUDA_R_32F = 0,
    CUDA_R_16F = 2,
    CUDA_R_16BF = 14,
    CUDA_R_8F_E4M3 = 28,
} cudaDataType_t, cudaDataType;

#define cudaStreamNonBlocking 0x01
#define cudaEventDisableTiming 0x02

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major, minor;
    int multiProcessorCount;
    size_t sharedMemPerBlockOptin;
};

#ifdef __cplusplus
extern "C" {
#endif
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int d);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s);
cudaError_t cudaMemsetAsync(void *dst, int v, size_t n, cudaStream_t s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
#ifdef __cplusplus
}
#endif

// ---------------------------------------------------------------------------
// 16-bit floats (round to nearest even, as the device's conversions)

typedef struct __nv_bfloat16 {
    uint16_t x;
} __nv_bfloat16;
typedef struct __half {
    uint16_t x;
} __half;

static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) r.x = (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    else r.x = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return r;
}
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.x; }
static inline float __bfloat162float(__nv_bfloat16 b) {
    const uint32_t u = (uint32_t)b.x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline __half __float2half_rn(float f) {
    _Float16 h = (_Float16)f; /* GCC: IEEE binary16, round to nearest even */
    __half r;
    memcpy(&r.x, &h, 2);
    return r;
}
static inline float __half2float(__half h) {
    _Float16 v;
    memcpy(&v, &h.x, 2);
    return (float)v;
}

// ---------------------------------------------------------------------------
// device math (IEEE single operations; the file is compiled with -ffp-contract=off)

/* rounded on their own, never fused with a neighbour (as nvcc never fuses these), also where the
 * host compiler contracts a * b + c (an FMA build of the emulator does, as nvcc does by default) */
static inline float emu_opaque(float r) {
    __asm__("" : "+x"(r));
    return r;
}
static inline float __fmul_rn(float a, float b) { return emu_opaque(a * b); }
static inline float __fadd_rn(float a, float b) { return emu_opaque(a + b); }
static inline float __fsub_rn(float a, float b) { return emu_opaque(a - b); }
static inline float __fdiv_rn(float a, float b) { return emu_opaque(a / b); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline int __float_as_int(float f) {
    int i;
    memcpy(&i, &f, 4);
    return i;
}
static inline float __uint_as_float(unsigned int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline unsigned int __float_as_uint(float f) {
    unsigned int i;
    memcpy(&i, &f, 4);
    return i;
}

#ifdef __cplusplus
// ---------------------------------------------------------------------------
// launch geometry and the scheduler

struct uint3 {
    unsigned x, y, z;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

namespace emu {
struct thread_ctx {
    uint3 tid, bid;
    dim3 bdim, gdim;
};
extern thread_local thread_ctx *cur;
void sync_threads();                           /* __syncthreads */
uint64_t shfl_xor(uint64_t v, int lane_mask);  /* a warp exchange of 8-byte slots */
constexpr size_t GATHER_WORDS = 4;             /* warp_gather's 8-byte words a lane */
void warp_gather(const void *mine, size_t n, void *all); /* every lane's n bytes, lane by lane */
void *dyn_smem();                              /* the launch's dynamic shared memory */
/* Runs a grid: body() once per thread, a block's threads as fibers. */
void run_grid(dim3 g, dim3 b, size_t smem, const std::function<void()> &body);
/* Runs now, or records into the stream's capture. */
void submit(cudaStream_t s, std::function<void()> work);
void set_last_error(cudaError_t e);
/* Stops the run when p is host memory a device could not read: mapped, but neither from
 * cudaMalloc nor from cudaMallocHost (NULL and unmapped values pass: sizes, flags). */
void check_device_ptr(const char *op, const char *what, const void *p);
/* The dynamic shared memory a kernel may take: 48 KiB unless cudaFuncSetAttribute raised it (to at
 * most 227 KiB, Hopper's per-block opt-in limit). */
size_t max_dyn_smem(const void *kernel);
cudaError_t set_max_dyn_smem(const void *kernel, int bytes);
template <typename T> inline void check_arg(int i, const T &a) {
    if constexpr (std::is_pointer<T>::value) {
        char what[32];
        snprintf(what, sizeof what, "argument %d", i);
        check_device_ptr("a kernel launch", what, (const void *)a);
    }
}

template <typename... P, typename... A>
void launch(dim3 g, dim3 b, size_t smem, cudaStream_t s, void (*k)(P...), A &&...a) {
    if (g.x == 0 || g.y == 0 || g.z == 0 || b.x * b.y * b.z == 0 || b.x * b.y * b.z > 1024 || g.y > 65535 || g.z > 65535 ||
        smem > max_dyn_smem((const void *)k)) {
        set_last_error(cudaErrorInvalidValue); /* a launch the device would refuse */
        return;
    }
    std::tuple<typename std::decay<P>::type...> args(std::forward<A>(a)...); /* by value, at launch time */
    std::apply([](const auto &...x) {
        int i = 0;
        (check_arg(i++, x), ...);
    }, args);
    submit(s, [=]() {
        auto t = args;
        run_grid(g, b, smem, [&]() { std::apply(k, t); });
    });
}
} // namespace emu

enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
template <typename... P> static inline cudaError_t cudaFuncSetAttribute(void (*k)(P...), cudaFuncAttribute a, int v) {
    if (a != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
    return emu::set_max_dyn_smem((const void *)k, v);
}

#define threadIdx (emu::cur->tid)
#define blockIdx (emu::cur->bid)
#define blockDim (emu::cur->bdim)
#define gridDim (emu::cur->gdim)
#define warpSize 32

static inline void __syncthreads() { emu::sync_threads(); }
/* prmt.b32 as __byte_perm documents it: byte n of the result is byte (s >> 4n) & 7 of {x, y} */
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const uint64_t v = (uint64_t)y << 32 | x;
    unsigned r = 0;
    for (int n = 0; n < 4; n++) r |= (unsigned)((v >> (8 * ((s >> (4 * n)) & 7u))) & 0xffu) << (8 * n);
    return r;
}
/* dp4a.s32.s32: c + the sum of the four products of a's and b's signed bytes */
static inline int __dp4a(int a, int b, int c) {
    for (int n = 0; n < 4; n++) c += (int)(int8_t)(a >> (8 * n)) * (int)(int8_t)(b >> (8 * n));
    return c;
}
static inline void __syncwarp(unsigned = 0xffffffffu) { (void)emu::shfl_xor(0, 0); }
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int lane_mask, int = 32) {
    static_assert(sizeof(T) <= 8, "shuffle of a wide type");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    u = emu::shfl_xor(u, lane_mask);
    T r;
    memcpy(&r, &u, sizeof r);
    return r;
}
template <typename T> static inline T min(T a, T b) { return a < b ? a : b; }
template <typename T> static inline T max(T a, T b) { return a > b ? a : b; }

/* The device's math library. CUDA's single-precision functions are within a stated number of
 * ulps of the true value (CUDA C++ Programming Guide, "Mathematical Functions", without
 * -use_fast_math, as nanovl builds): expf, exp2f, erff, tanhf, sinf, cosf 2; logf, log2f, log1pf,
 * expm1f 1; tanf, powf, erfcf 4; glibc's, which the emulator calls, are within about half an ulp.
 * NVL_CUDA_EMU_MATH=ulp moves each result by a whole number of ulps in [-n, n] (n: the function's
 * CUDA bound), a hash of the argument choosing which, so that bounds and bit-equality claims the
 * GPU tests make hold for any library within CUDA's stated errors (here up to n + 1/2 ulps from
 * the true value: a little worse than a device). sqrtf and f32 division are correctly rounded on
 * both. The macros below must come after every standard header of a file (the generated sources
 * include this header after theirs). */
namespace emu {
int math_ulp_mode();
}
static inline float emu_math_ulp(float r, float x, int n) {
    if (!emu::math_ulp_mode() || !isfinite(r) || r == 0.f) return r;
    uint32_t h;
    memcpy(&h, &x, 4);
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    int k = (int)(h % (uint32_t)(2 * n + 1)) - n;
    for (; k > 0; k--) r = nextafterf(r, INFINITY);
    for (; k < 0; k++) r = nextafterf(r, -INFINITY);
    return r;
}
#define EMU_MATH1(f, n)                                                                                \
    static inline float emu_##f(float x) { return emu_math_ulp(f(x), x, n); }
EMU_MATH1(expf, 2)
EMU_MATH1(exp2f, 2)
EMU_MATH1(erff, 2)
EMU_MATH1(tanhf, 2)
EMU_MATH1(sinf, 2)
EMU_MATH1(cosf, 2)
EMU_MATH1(logf, 1)
EMU_MATH1(log2f, 1)
EMU_MATH1(log1pf, 1)
EMU_MATH1(expm1f, 1)
EMU_MATH1(tanf, 4)
EMU_MATH1(erfcf, 4)
#undef EMU_MATH1
static inline float emu_powf(float x, float y) { return emu_math_ulp(powf(x, y), x * 0.5f + y, 4); }
#define expf(x) emu_expf(x)
#define exp2f(x) emu_exp2f(x)
#define erff(x) emu_erff(x)
#define tanhf(x) emu_tanhf(x)
#define sinf(x) emu_sinf(x)
#define cosf(x) emu_cosf(x)
#define logf(x) emu_logf(x)
#define log2f(x) emu_log2f(x)
#define log1pf(x) emu_log1pf(x)
#define expm1f(x) emu_expm1f(x)
#define tanf(x) emu_tanf(x)
#define erfcf(x) emu_erfcf(x)
#define powf(x, y) emu_powf(x, y)
#endif

#endif // TESTS_CUDA_EMU_H
