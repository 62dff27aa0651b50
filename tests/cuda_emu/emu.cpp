// The CUDA emulator's runtime (tests/cuda_emu/include/cuda_emu.h): fibers for a block's threads,
// host memory as device memory, in-order streams with capture into replayable graphs, and the
// cuBLAS / cuBLASLt calls the CUDA backend makes. For tests only: never part of nanovl.
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "cublas_emu.h"
#include "cuda_emu.h"
#include "quant_round.cuh"

/* A two-way setting: 1 when the variable says `on`, 0 when `off`, def when unset; anything else
 * stops the process (a misspelt setting must not run the tests under the default unnoticed). */
static int env_choice(const char *name, const char *off, const char *on, int def) {
    const char *v = getenv(name);
    if (!v || !*v) return def;
    if (!strcmp(v, on)) return 1;
    if (!strcmp(v, off)) return 0;
    fprintf(stderr, "cuda emulator: %s must be %s or %s\n", name, off, on);
    abort();
}

int emu::math_ulp_mode() { /* NVL_CUDA_EMU_MATH=ulp (cuda_emu.h, the device's math library) */
    static const int m = env_choice("NVL_CUDA_EMU_MATH", "exact", "ulp", 0);
    return m;
}

static int emu_trace(void) { /* NVL_CUDA_EMU_TRACE=1: every cuBLAS / cuBLASLt call to stderr */
    static int t = -1;
    if (t < 0) t = getenv("NVL_CUDA_EMU_TRACE") && atoi(getenv("NVL_CUDA_EMU_TRACE")) > 0;
    return t;
}

[[noreturn]] static void emu_fatal(const char *what) {
    fprintf(stderr, "cuda emulator: %s\n", what);
    abort();
}

// ---------------------------------------------------------------------------
// fibers: a stack switch saving the callee-saved registers and the FP control words (no system
// call, unlike swapcontext's signal mask: a block's threads switch at every barrier)

#if !defined(__x86_64__)
#error "the CUDA emulator's fibers are written for x86-64"
#endif
extern "C" void emu_ctx_switch(void **save_sp, void *load_sp);
__asm__(".text\n"
        ".globl emu_ctx_switch\n"
        ".hidden emu_ctx_switch\n"
        ".type emu_ctx_switch,@function\n"
        "emu_ctx_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size emu_ctx_switch, .-emu_ctx_switch\n");

/* AddressSanitizer must be told of every stack switch (else it takes a fiber's stack for an
 * overflow of the scheduler's): start before the switch, finish once running on the new stack. */
#if defined(__SANITIZE_ADDRESS__)
extern "C" void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old, size_t *size_old);
#define ASAN_START(save, bottom, size) __sanitizer_start_switch_fiber(save, bottom, size)
#define ASAN_FINISH(save, bottom_old, size_old) __sanitizer_finish_switch_fiber(save, bottom_old, size_old)
#else
#define ASAN_START(save, bottom, size) ((void)0)
#define ASAN_FINISH(save, bottom_old, size_old) ((void)0)
#endif

/* A stack whose first switch "returns" into entry (entered with the alignment of a call). */
static void *fiber_stack_init(char *lo, size_t size, void (*entry)()) {
    uintptr_t top = ((uintptr_t)(lo + size)) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = NULL;            /* entry's return address: never used */
    *--sp = (void *)entry;   /* ret of emu_ctx_switch goes here */
    for (int i = 0; i < 6; i++) *--sp = NULL; /* rbp rbx r12 r13 r14 r15 */
    uint32_t cw[2];
    __asm__ volatile("stmxcsr %0" : "=m"(cw[0]));
    __asm__ volatile("fnstcw %0" : "=m"(cw[1]));
    --sp;
    memcpy(sp, cw, 8);
    return sp;
}

// ---------------------------------------------------------------------------
// the scheduler

namespace emu {
thread_local thread_ctx *cur;
static thread_local cudaError_t g_last = cudaSuccess;
void set_last_error(cudaError_t e) {
    if (g_last == cudaSuccess) g_last = e;
}

enum fiber_state { F_RUN, F_BAR, F_WARP, F_DONE };
struct fiber {
    void *sp;
    char *stack_lo;  /* its stack (STACK bytes) */
    void *fake;      /* ASan's fake stack while switched out */
    thread_ctx ctx;
    fiber_state st;
    unsigned gen; /* warp exchanges so far (slot parity) */
};
struct block_run {
    std::vector<fiber> f;
    std::vector<uint64_t> xbuf; /* two slots a thread (warp exchanges) */
    std::vector<uint64_t> gbuf; /* two slots of GATHER_WORDS a thread (warp_gather) */
    void *sched_sp;
    const void *sched_lo; /* the scheduler's stack, as ASan reported it (a fiber switches back to it) */
    size_t sched_size;
    void *sched_fake;
    int cur_i;
    const std::function<void()> *body;
};
static thread_local block_run *g_block;   /* the block running in fibers */
static thread_local std::vector<char> g_stacks;
static thread_local std::vector<char> g_dyn; /* dynamic shared memory of the running launch */
constexpr size_t STACK = 64 << 10;

static std::mutex g_mu; /* the allocations */

/* 128-byte aligned, as a device's dynamic shared memory (the vector's own alignment is 16) */
void *dyn_smem() { return (void *)(((uintptr_t)g_dyn.data() + 127) & ~(uintptr_t)127); }

static std::mutex g_attr_mu;
static std::map<const void *, size_t> g_max_dyn; /* kernels given more than 48 KiB */
size_t max_dyn_smem(const void *kernel) {
    std::lock_guard<std::mutex> g(g_attr_mu);
    auto it = g_max_dyn.find(kernel);
    return it == g_max_dyn.end() ? 48 * 1024 : it->second;
}
cudaError_t set_max_dyn_smem(const void *kernel, int bytes) {
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    if (bytes < 0 || (size_t)bytes > prop.sharedMemPerBlockOptin) {
        set_last_error(cudaErrorInvalidValue);
        return cudaErrorInvalidValue;
    }
    std::lock_guard<std::mutex> g(g_attr_mu);
    g_max_dyn[kernel] = (size_t)bytes > 48 * 1024 ? (size_t)bytes : 48 * 1024;
    return cudaSuccess;
}

} // namespace emu
extern "C" char __start_emu_shared[], __stop_emu_shared[]; /* the linker's bounds of the section */
namespace emu {
/* Before each block: its shared memory (static and dynamic) as a device leaves it, garbage. */
__attribute__((no_sanitize_address)) static void poison_shared() { /* (over ASan's redzones between them too) */
    for (volatile char *c = __start_emu_shared; c < __stop_emu_shared; c++) *c = (char)0xff;
    memset(g_dyn.data(), 0xff, g_dyn.size());
}

[[noreturn]] static void fiber_main() {
    block_run *b = g_block;
    ASAN_FINISH(NULL, &b->sched_lo, &b->sched_size);
    (*b->body)();
    fiber &f = b->f[b->cur_i];
    f.st = F_DONE;
    ASAN_START(NULL, b->sched_lo, b->sched_size); /* (NULL: this fiber's stack is done with) */
    emu_ctx_switch(&f.sp, b->sched_sp); /* back to the scheduler, never resumed */
    emu_fatal("a finished fiber was resumed");
}

static void yield_as(fiber_state st) {
    block_run *b = g_block;
    fiber &f = b->f[b->cur_i];
    f.st = st;
    ASAN_START(&f.fake, b->sched_lo, b->sched_size);
    emu_ctx_switch(&f.sp, b->sched_sp);
    ASAN_FINISH(f.fake, &b->sched_lo, &b->sched_size);
}

void sync_threads() { yield_as(F_BAR); }

uint64_t shfl_xor(uint64_t v, int lane_mask) {
    block_run *b = g_block;
    const int t = b->cur_i, n = (int)b->f.size();
    const unsigned k = b->f[t].gen++, g = k & 1u;
    b->xbuf[2 * (size_t)t + g] = v;
    yield_as(F_WARP);
    const int p = (t & ~31) | ((t & 31) ^ (lane_mask & 31));
    if (p >= n) return v;
    /* the partner lane must have come to this exchange too: one that exited before it (or took
       another path) has no value to give on a device either */
    if (b->f[(size_t)p].gen <= k) emu_fatal("a warp shuffle with a lane that exited or never reached it");
    return b->xbuf[2 * (size_t)p + g];
}

/* Every lane's n bytes (n <= 8 GATHER_WORDS) into all[lane * n ..], a warp-wide exchange like a
 * shuffle (the same generation count: the two kinds may interleave): what a warp-collective
 * instruction (mma.sync) sees of the 32 lanes' registers. Every lane of the warp must come. */
void warp_gather(const void *mine, size_t n, void *all) {
    block_run *b = g_block;
    const int t = b->cur_i, nt = (int)b->f.size();
    if (n > 8 * GATHER_WORDS) emu_fatal("warp_gather: too many bytes a lane");
    const unsigned k = b->f[t].gen++, g = k & 1u;
    memcpy(&b->gbuf[(2 * (size_t)t + g) * GATHER_WORDS], mine, n);
    yield_as(F_WARP);
    const int lo = t & ~31;
    for (int l = 0; l < 32; l++) {
        const int p = lo + l;
        if (p >= nt || b->f[(size_t)p].gen <= k) emu_fatal("a warp-collective operation with a lane that exited or never reached it");
        memcpy((char *)all + (size_t)l * n, &b->gbuf[(2 * (size_t)p + g) * GATHER_WORDS], n);
    }
}

/* The schedule. A block's warps run one at a time, each as far as it can go (through its warp
 * exchanges) before the next starts, and the lanes of a warp one at a time up to their next
 * exchange. So a warp runs ahead of the others to the barrier, as a device may let it: a missing
 * __syncthreads between one warp's read of shared memory and another's later write of it (a
 * reuse) shows, as does a read of what another warp writes (a read before the write).
 * NVL_CUDA_EMU_ORDER=reverse runs the warps, and the lanes of each, last first, and the grid's
 * blocks first first. Running the tests in both orders puts every reader of shared memory that a
 * barrier does not order after its writer before the writer in one of them (it then reads stale
 * or poisoned memory and the results differ), and every writer that reuses memory too early
 * before a reader in the other. */
static int order_reversed(void) {
    static const int r = env_choice("NVL_CUDA_EMU_ORDER", "forward", "reverse", 0);
    return r;
}

/* Runs one block's threads as fibers (switching only at barriers and warp exchanges), warp by warp. */
static void run_block_fibers(dim3 g, dim3 bd, uint3 bid, const std::function<void()> &body) {
    const int n = (int)(bd.x * bd.y * bd.z);
    block_run b;
    b.f.resize((size_t)n);
    b.xbuf.assign(2 * (size_t)n, 0);
    b.gbuf.assign(2 * (size_t)n * GATHER_WORDS, 0);
    b.body = &body;
    if (g_stacks.size() < (size_t)n * STACK) g_stacks.resize((size_t)n * STACK);
    block_run *saved = g_block;
    g_block = &b;
    for (int i = 0; i < n; i++) {
        fiber &f = b.f[(size_t)i];
        f.ctx.tid = uint3{(unsigned)i % bd.x, ((unsigned)i / bd.x) % bd.y, (unsigned)i / (bd.x * bd.y)};
        f.ctx.bid = bid;
        f.ctx.bdim = bd;
        f.ctx.gdim = g;
        f.st = F_RUN;
        f.gen = 0;
        f.stack_lo = g_stacks.data() + (size_t)i * STACK;
        f.fake = NULL;
        f.sp = fiber_stack_init(f.stack_lo, STACK, fiber_main);
    }
    const int rev = order_reversed(), nw = (n + 31) / 32;
    for (;;) {
        int progress = 0;
        for (int k = 0; k < nw; k++) { /* each warp in turn, as far as it goes before the barrier */
            const int w = rev ? nw - 1 - k : k, lo = 32 * w, hi = n < lo + 32 ? n : lo + 32;
            for (;;) {
                int ran = 0;
                for (int j = 0; j < hi - lo; j++) {
                    const int i = rev ? hi - 1 - j : lo + j;
                    if (b.f[(size_t)i].st != F_RUN) continue;
                    b.cur_i = i;
                    cur = &b.f[(size_t)i].ctx;
                    ASAN_START(&b.sched_fake, b.f[(size_t)i].stack_lo, STACK);
                    emu_ctx_switch(&b.sched_sp, b.f[(size_t)i].sp);
                    ASAN_FINISH(b.sched_fake, NULL, NULL);
                    ran = 1;
                }
                int a = 0, x = 0; /* the warp's living threads all wait at an exchange: it goes on */
                for (int i = lo; i < hi; i++) {
                    a += b.f[(size_t)i].st != F_DONE;
                    x += b.f[(size_t)i].st == F_WARP;
                }
                if (a && a == x) {
                    for (int i = lo; i < hi; i++)
                        if (b.f[(size_t)i].st == F_WARP) b.f[(size_t)i].st = F_RUN;
                    ran = 1;
                }
                if (!ran) break;
                progress = 1;
            }
        }
        int alive = 0, at_bar = 0;
        for (int i = 0; i < n; i++) {
            alive += b.f[(size_t)i].st != F_DONE;
            at_bar += b.f[(size_t)i].st == F_BAR;
        }
        if (!alive) break;
        if (at_bar == alive) { /* every living thread at the barrier */
            for (int i = 0; i < n; i++)
                if (b.f[(size_t)i].st == F_BAR) b.f[(size_t)i].st = F_RUN;
            progress = 1;
        }
        if (!progress) emu_fatal("deadlock: the threads of a block wait at different barriers or shuffles");
    }
    g_block = saved;
}

void run_grid(dim3 g, dim3 bd, size_t smem, const std::function<void()> &body) {
    g_dyn.assign(smem + 128, 0);
    thread_ctx *saved = cur;
    for (unsigned bz_ = 0; bz_ < g.z; bz_++)
        for (unsigned by_ = 0; by_ < g.y; by_++)
            for (unsigned bx_ = 0; bx_ < g.x; bx_++) {
                /* the last block first (reversed order: the first first): a device runs them in
                   any order */
                const int rev = order_reversed();
                const unsigned bx = rev ? bx_ : g.x - 1 - bx_, by = rev ? by_ : g.y - 1 - by_, bz = rev ? bz_ : g.z - 1 - bz_;
                poison_shared();
                run_block_fibers(g, bd, uint3{bx, by, bz}, body);
            }
    cur = saved;
}
} // namespace emu

// ---------------------------------------------------------------------------
// streams, graphs, memory

/* A stream's work waits in `pending` until something synchronises with it (the stream, an event
 * recorded on it, the device, a synchronous copy, cudaFree), as a device runs it later than the
 * host asked: a missing synchronisation reads stale results here too. */
struct CUstream_st {
    int capturing;
    int invalidated; /* an unsafe call was made during the capture: EndCapture fails */
    std::vector<std::function<void()>> ops;     /* the capture's */
    std::vector<std::function<void()>> pending; /* submitted, not yet run */
    uint64_t submitted, executed;
};
struct CUevent_st {
    cudaStream_t s;
    uint64_t pos; /* the stream's work before the record */
};
struct CUgraph_st {
    std::vector<std::function<void()>> ops;
};
struct CUgraphExec_st {
    std::vector<std::function<void()>> ops;
};

static std::mutex g_streams_mu;
static std::vector<cudaStream_t> g_streams;
/* Runs s's pending work up to position pos (all of it: UINT64_MAX). */
static void flush(cudaStream_t s, uint64_t pos = UINT64_MAX) {
    if (!s) return;
    while (s->executed < s->submitted && s->executed < pos) {
        std::function<void()> w = std::move(s->pending[(size_t)(s->executed - (s->submitted - s->pending.size()))]);
        s->executed++;
        w();
    }
    if (s->executed == s->submitted) s->pending.clear();
}
static void flush_all() {
    std::vector<cudaStream_t> all;
    {
        std::lock_guard<std::mutex> lk(g_streams_mu);
        all = g_streams;
    }
    for (cudaStream_t s : all) flush(s);
}

namespace emu {
void submit(cudaStream_t s, std::function<void()> work) {
    if (s && s->capturing) s->ops.push_back(std::move(work));
    else if (s) {
        s->pending.push_back(std::move(work));
        s->submitted++;
    } else { /* the legacy default stream: after everything else */
        flush_all();
        work();
    }
}
} // namespace emu

/* The stream this thread captures (cudaStreamCaptureModeThreadLocal, the backend's mode): while it
 * does, the calls CUDA calls unsafe (allocation, freeing, synchronising, synchronous copies) fail
 * and invalidate the capture, as on a device. */
static thread_local cudaStream_t g_capturing;
static cudaError_t unsafe_in_capture(void) {
    if (!g_capturing) return cudaSuccess;
    g_capturing->invalidated = 1;
    emu::set_last_error(cudaErrorStreamCaptureUnsupported);
    return cudaErrorStreamCaptureUnsupported;
}
#define CAPTURE_GUARD()                                         \
    do {                                                        \
        const cudaError_t ce_ = unsafe_in_capture();            \
        if (ce_ != cudaSuccess) return ce_;                     \
    } while (0)

static std::map<void *, size_t> g_allocs, g_pinned; /* cudaMalloc's, cudaMallocHost's */
static int in_ranges(const std::map<void *, size_t> &m, const void *p) {
    auto it = m.upper_bound((void *)p);
    if (it == m.begin()) return 0;
    --it;
    return (const char *)p <= (const char *)it->first + it->second; /* (one past the end: an empty view) */
}
void emu::check_device_ptr(const char *op, const char *what, const void *p) {
    if (!p) return;
    {
        std::lock_guard<std::mutex> lk(emu::g_mu);
        if (in_ranges(g_allocs, p) || in_ranges(g_pinned, p)) return;
    }
    const uintptr_t page = (uintptr_t)p & ~(uintptr_t)4095;
    if (msync((void *)page, 1, MS_ASYNC) != 0) return; /* not mapped: not a pointer */
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s is host memory (%p), which a device cannot read (a weight not placed? a host buffer?)",
             op, what, p);
    emu_fatal(msg);
}
static size_t g_used;
static size_t emu_limit() {
    static size_t lim = 0;
    if (!lim) {
        const char *v = getenv("NVL_CUDA_EMU_MEM_MB"); /* a smaller device, for out-of-memory paths */
        lim = v && atoll(v) > 0 ? (size_t)atoll(v) << 20 : (size_t)16 << 30;
    }
    return lim;
}

extern "C" {
cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : (emu::set_last_error(cudaErrorInvalidDevice), cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int *d) { *d = 0; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int d) {
    if (d != 0) return cudaErrorInvalidDevice;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CUDA emulator (tests/cuda_emu)");
    p->totalGlobalMem = emu_limit();
    p->major = 9;
    p->minor = 0;
    /* an H100's / H200's 132, or NVL_CUDA_EMU_SMS (kernels that split work to fill the SMs) */
    const char *sms = getenv("NVL_CUDA_EMU_SMS");
    p->multiProcessorCount = sms && atoi(sms) > 0 ? atoi(sms) : 132;
    /* Hopper's 227 KiB, or NVL_CUDA_EMU_SMEM_KB (e.g. 99, an sm_89 part) */
    const char *sk = getenv("NVL_CUDA_EMU_SMEM_KB");
    p->sharedMemPerBlockOptin = (size_t)(sk && atoi(sk) > 0 ? atoi(sk) : 227) * 1024;
    return cudaSuccess;
}
cudaError_t cudaGetLastError(void) {
    const cudaError_t e = emu::g_last;
    emu::g_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return emu::g_last; }
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    default: return "unknown error";
    }
}
static cudaError_t fail(cudaError_t e) {
    emu::set_last_error(e);
    return e;
}
cudaError_t cudaMalloc(void **p, size_t n) {
    *p = NULL;
    CAPTURE_GUARD();
    std::lock_guard<std::mutex> lk(emu::g_mu);
    if (g_used + n > emu_limit()) return fail(cudaErrorMemoryAllocation);
    /* exactly n bytes (256-aligned as cudaMalloc's), so that AddressSanitizer sees a kernel's first
       byte past the buffer (memcheck) */
    if (posix_memalign(p, 256, n ? n : 1) != 0) {
        *p = NULL;
        return fail(cudaErrorMemoryAllocation);
    }
    /* a device's fresh memory holds whatever was there: here NaN in every float format (0xff
       bytes), so a kernel that reads memory nobody wrote spreads NaN into the results (initcheck) */
    memset(*p, 0xff, n);
    g_allocs[*p] = n;
    g_used += n;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    CAPTURE_GUARD();
    flush_all(); /* (cudaFree waits for the device) */
    std::lock_guard<std::mutex> lk(emu::g_mu);
    auto it = g_allocs.find(p);
    if (it == g_allocs.end()) return fail(cudaErrorInvalidValue); /* not a device allocation */
    g_used -= it->second;
    g_allocs.erase(it);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t n) {
    CAPTURE_GUARD();
    *p = aligned_alloc(256, (n + 255) & ~(size_t)255);
    if (!*p) return fail(cudaErrorMemoryAllocation);
    std::lock_guard<std::mutex> lk(emu::g_mu);
    g_pinned[*p] = n; /* (pinned host memory: a device reads it) */
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) {
    CAPTURE_GUARD();
    if (!p) return cudaSuccess;
    {
        std::lock_guard<std::mutex> lk(emu::g_mu);
        g_pinned.erase(p);
    }
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    std::lock_guard<std::mutex> lk(emu::g_mu);
    *total_b = emu_limit();
    *free_b = emu_limit() - g_used;
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind) {
    CAPTURE_GUARD();
    flush_all();
    memmove(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s) {
    if (s && s->capturing && (k == cudaMemcpyDeviceToHost)) return fail(cudaErrorStreamCaptureUnsupported);
    int src_pinned, dst_pinned;
    {
        std::lock_guard<std::mutex> lk(emu::g_mu);
        src_pinned = in_ranges(g_pinned, src);
        dst_pinned = in_ranges(g_pinned, dst);
    }
    if (k == cudaMemcpyHostToDevice && !src_pinned && !(s && s->capturing)) {
        /* from pageable memory the runtime stages the bytes before returning: the caller may reuse them */
        std::shared_ptr<std::vector<char>> snap = std::make_shared<std::vector<char>>((const char *)src, (const char *)src + n);
        emu::submit(s, [=]() { memcpy(dst, snap->data(), n); });
        return cudaSuccess;
    }
    if (k == cudaMemcpyDeviceToHost && !dst_pinned && !(s && s->capturing)) {
        /* to pageable memory it returns once the copy is done (after the stream's earlier work) */
        flush(s);
        memcpy(dst, src, n);
        return cudaSuccess;
    }
    emu::submit(s, [=]() { memcpy(dst, src, n); }); /* pinned memory is read and written when the copy runs */
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *dst, int v, size_t n, cudaStream_t s) {
    emu::submit(s, [=]() { memset(dst, v, n); });
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) {
    *s = new CUstream_st();
    std::lock_guard<std::mutex> lk(g_streams_mu);
    g_streams.push_back(*s);
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    flush(s); /* (its queued work still runs) */
    {
        std::lock_guard<std::mutex> lk(g_streams_mu);
        for (size_t i = 0; i < g_streams.size(); i++)
            if (g_streams[i] == s) {
                g_streams.erase(g_streams.begin() + (long)i);
                break;
            }
    }
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    CAPTURE_GUARD();
    if (s && s->capturing) return fail(cudaErrorStreamCaptureUnsupported); /* a sync inside a capture */
    if (s) flush(s);
    else flush_all();
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
    CAPTURE_GUARD();
    flush_all();
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new CUevent_st();
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    if (s && s->capturing) return cudaSuccess; /* (a captured record: no wait is tied to it here) */
    e->s = s;
    e->pos = s ? s->submitted : 0;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    CAPTURE_GUARD();
    flush(e->s, e->pos); /* the work recorded before it */
    return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t, cudaEvent_t) {
    *ms = 1.0f;
    return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
    if (!s || s->capturing || g_capturing) return fail(cudaErrorInvalidValue);
    s->capturing = 1;
    s->invalidated = 0;
    s->ops.clear();
    g_capturing = s;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
    if (!s || !s->capturing) return fail(cudaErrorInvalidValue);
    s->capturing = 0;
    if (g_capturing == s) g_capturing = NULL;
    if (s->invalidated) { /* an unsafe call during the capture: no graph */
        s->ops.clear();
        *g = NULL;
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    *g = new CUgraph_st{std::move(s->ops)};
    s->ops.clear();
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long) {
    *x = new CUgraphExec_st{g->ops};
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t s) {
    emu::submit(s, [x]() {
        for (auto &op : x->ops) op();
    });
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x) {
    delete x;
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
} // extern "C"

// ---------------------------------------------------------------------------
// cuBLAS / cuBLASLt

struct cublasContext {
    cudaStream_t s;
};
struct cublasLtContext {
    int dummy;
};
struct cublasLtMatmulDescOpaque {
    int ta, tb;
    uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias = nullptr;
    int32_t bias_t = -1; /* -1: D's type */
};
struct cublasLtMatrixLayoutOpaque {
    cudaDataType_t t;
    uint64_t rows, cols;
    int64_t ld;
};
struct cublasLtMatmulPreferenceOpaque {
    int dummy;
};

static float ldv(const void *p, cudaDataType_t t, size_t i) {
    switch (t) {
    case CUDA_R_16BF: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case CUDA_R_16F: return __half2float(((const __half *)p)[i]);
    case CUDA_R_8F_E4M3: return qr_e4m3_to_f32(((const uint8_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}
static void stv(void *p, cudaDataType_t t, size_t i, float v) {
    if (t == CUDA_R_16BF) ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
    else if (t == CUDA_R_16F) ((__half *)p)[i] = __float2half_rn(v);
    else ((float *)p)[i] = v;
}
/* D (m x n, column-major) = alpha op(A) op(B) + beta C (+ bias[i], of type ct: the bias epilogue)
   in f32, then converted to ct */
static void gemm(int ta, int tb, int m, int n, int k, float alpha, const void *A, cudaDataType_t at, int64_t lda,
                 const void *B, cudaDataType_t bt, int64_t ldb, float beta, const void *C, void *D, cudaDataType_t ct,
                 int64_t ldc, const void *bias = nullptr) {
#pragma omp parallel for schedule(static) if ((int64_t)m * n * k > (1 << 22))
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float acc = 0.0f;
            for (int l = 0; l < k; l++) {
                const float a = ldv(A, at, ta ? (size_t)l + (size_t)i * (size_t)lda : (size_t)i + (size_t)l * (size_t)lda);
                const float b = ldv(B, bt, tb ? (size_t)j + (size_t)l * (size_t)ldb : (size_t)l + (size_t)j * (size_t)ldb);
                acc += a * b;
            }
            float v = alpha * acc;
            if (beta != 0.0f) v += beta * ldv(C, ct, (size_t)i + (size_t)j * (size_t)ldc);
            if (bias) v += ldv(bias, ct, (size_t)i);
            stv(D, ct, (size_t)i + (size_t)j * (size_t)ldc, v);
        }
}

/* FP8 x FP8 as Hopper's tensor cores add it (cuBLASLt without FAST_ACCUM), a model from the
 * DeepSeek-V3 report (§3.3.2: products aligned to the largest exponent of an MMA's k-group and
 * truncated to 13 fraction bits, ~14 significant bits kept; partial sums promoted to f32 every
 * 128 k): each k32 group's products and the running partial sum are cut toward zero to a quantum
 * of 2^(e - 13) (e: the exponent of the largest of them, as 1.f x 2^e) and added exactly; every
 * 128 k the partial sum is added to an f32 total. NVL_CUDA_EMU_FP8ACC=exact: the f32 GEMM. */
static int fp8acc_model(void) {
    static const int m = env_choice("NVL_CUDA_EMU_FP8ACC", "exact", "hopper", 1);
    return m;
}
static void gemm_fp8(int ta, int tb, int m, int n, int k, float alpha, const void *A, int64_t lda, const void *B, int64_t ldb,
                     float beta, const void *C, void *D, cudaDataType_t ct, int64_t ldc) {
#pragma omp parallel for schedule(static) if ((int64_t)m * n * k > (1 << 22))
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float total = 0.0f;
            for (int c0 = 0; c0 < k; c0 += 128) {
                double part = 0.0; /* exact: the cut terms are multiples of one quantum */
                for (int g0 = c0; g0 < k && g0 < c0 + 128; g0 += 32) {
                    double p[32];
                    int np = 0;
                    double big = fabs(part);
                    for (int l = g0; l < k && l < g0 + 32; l++, np++) {
                        const float a = ldv(A, CUDA_R_8F_E4M3, ta ? (size_t)l + (size_t)i * (size_t)lda : (size_t)i + (size_t)l * (size_t)lda);
                        const float b = ldv(B, CUDA_R_8F_E4M3, tb ? (size_t)j + (size_t)l * (size_t)ldb : (size_t)l + (size_t)j * (size_t)ldb);
                        p[np] = (double)a * b; /* exact */
                        big = fabs(p[np]) > big ? fabs(p[np]) : big;
                    }
                    if (big == 0.0) continue;
                    int e2;
                    frexp(big, &e2); /* big = f x 2^e2, f in [0.5, 1): 1.f x 2^(e2 - 1) */
                    const double q = ldexp(1.0, e2 - 1 - 13);
                    double sum = trunc(part / q) * q;
                    for (int t = 0; t < np; t++) sum += trunc(p[t] / q) * q;
                    part = sum;
                }
                total += (float)part;
            }
            float v = alpha * total;
            if (beta != 0.0f) v += beta * ldv(C, ct, (size_t)i + (size_t)j * (size_t)ldc);
            stv(D, ct, (size_t)i + (size_t)j * (size_t)ldc, v);
        }
}

extern "C" {
cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new cublasContext();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    h->s = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void *, size_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t at, int lda, const void *B, cudaDataType_t bt,
                            int ldb, const void *beta, void *C, cudaDataType_t ct, int ldc, cublasComputeType_t comp,
                            cublasGemmAlgo_t) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    /* cuBLAS's argument checks (column-major: op(A) m x k, op(B) k x n, C m x n) */
    if (m < 0 || n < 0 || k < 0 || lda < (ta == CUBLAS_OP_N ? (m > 1 ? m : 1) : (k > 1 ? k : 1)) ||
        ldb < (tb == CUBLAS_OP_N ? (k > 1 ? k : 1) : (n > 1 ? n : 1)) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    const int ok = comp == CUBLAS_COMPUTE_32F && at == bt &&
                   ((at == CUDA_R_32F && ct == CUDA_R_32F) || (at == CUDA_R_16BF && (ct == CUDA_R_16BF || ct == CUDA_R_32F)) ||
                    (at == CUDA_R_16F && (ct == CUDA_R_16F || ct == CUDA_R_32F)));
    if (!ok) return CUBLAS_STATUS_NOT_SUPPORTED;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    if (emu_trace())
        fprintf(stderr, "cuda emulator: cublasGemmEx %c%c m %d n %d k %d types %d %d -> %d, ld %d %d %d\n", ta ? 'T' : 'N',
                tb ? 'T' : 'N', m, n, k, (int)at, (int)bt, (int)ct, lda, ldb, ldc);
    emu::submit(h->s, [=]() { gemm(ta == CUBLAS_OP_T, tb == CUBLAS_OP_T, m, n, k, al, A, at, lda, B, bt, ldb, be, C, C, ct, ldc); });
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = new cublasLtContext();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t comp, cudaDataType_t scale) {
    if (comp != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new cublasLtMatmulDescOpaque();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *v,
                                              size_t n) {
    if (a == CUBLASLT_MATMUL_DESC_BIAS_POINTER) {
        if (n != sizeof(void *)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->bias, v, sizeof(void *));
        return CUBLAS_STATUS_SUCCESS;
    }
    if (n != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
    if (a == CUBLASLT_MATMUL_DESC_EPILOGUE) {
        const uint32_t e = *(const uint32_t *)v;
        if (e != CUBLASLT_EPILOGUE_DEFAULT && e != CUBLASLT_EPILOGUE_BIAS) return CUBLAS_STATUS_NOT_SUPPORTED;
        d->epilogue = e;
    } else if (a == CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE) d->bias_t = *(const int32_t *)v;
    else if (a == CUBLASLT_MATMUL_DESC_TRANSA) d->ta = *(const int32_t *)v;
    else if (a == CUBLASLT_MATMUL_DESC_TRANSB) d->tb = *(const int32_t *)v;
    else return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t t, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
    if (ld < (int64_t)rows) return CUBLAS_STATUS_INVALID_VALUE; /* column-major: ld >= rows */
    *l = new cublasLtMatrixLayoutOpaque{t, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new cublasLtMatmulPreferenceOpaque();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t,
                                                    const void *, size_t) {
    return CUBLAS_STATUS_SUCCESS;
}
/* the shapes of a matmul: op(A) m x k, op(B) k x n, C/D m x n; 0 when they do not fit */
static int lt_shapes(cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                     int *m, int *n, int *k) {
    const uint64_t am = d->ta ? a->cols : a->rows, ak = d->ta ? a->rows : a->cols;
    const uint64_t bk = d->tb ? b->cols : b->rows, bn = d->tb ? b->rows : b->cols;
    if (ak != bk || c->rows != am || c->cols != bn) return 0;
    *m = (int)am, *n = (int)bn, *k = (int)ak;
    return 1;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t,
                                              cublasLtMatmulPreference_t, int want, cublasLtMatmulHeuristicResult_t *res,
                                              int *n_res) {
    int m, n, k;
    *n_res = 0;
    if (!lt_shapes(d, a, b, c, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    /* FP8 on Hopper: "TN" only (A transposed, B not), K a multiple of 16 */
    if ((a->t == CUDA_R_8F_E4M3 || b->t == CUDA_R_8F_E4M3) && (!d->ta || d->tb || k % 16)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (want < 1) return CUBLAS_STATUS_INVALID_VALUE;
    /* the bias epilogue: a bias of D's type (the default), bf16 / f16 / f32 operands */
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS &&
        ((d->bias_t != -1 && d->bias_t != (int32_t)c->t) || a->t == CUDA_R_8F_E4M3 || b->t == CUDA_R_8F_E4M3))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    memset(res, 0, sizeof *res);
    res->state = CUBLAS_STATUS_SUCCESS;
    *n_res = 1;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta,
                              const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *, void *, size_t, cudaStream_t s) {
    int m, n, k;
    if (!h || !lt_shapes(d, la, lb, lc, &m, &n, &k) || ld->rows != lc->rows || ld->cols != lc->cols || ld->t != lc->t)
        return CUBLAS_STATUS_INVALID_VALUE;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    const int ta = d->ta, tb = d->tb;
    const cudaDataType_t at = la->t, bt = lb->t, ct = lc->t;
    const int64_t lda = la->ld, ldb = lb->ld, ldc = lc->ld, ldd = ld->ld;
    if (C != D && ldc != ldd) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (emu_trace())
        fprintf(stderr, "cuda emulator: cublasLtMatmul %c%c m %d n %d k %d types %d %d -> %d, ld %lld %lld %lld, alpha %g\n",
                ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, (int)at, (int)bt, (int)ct, (long long)lda, (long long)ldb,
                (long long)ldd, al);
    const void *bias = d->epilogue == CUBLASLT_EPILOGUE_BIAS ? d->bias : nullptr;
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS &&
        (!bias || (d->bias_t != -1 && d->bias_t != (int32_t)ct) || at == CUDA_R_8F_E4M3 || bt == CUDA_R_8F_E4M3))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    emu::check_device_ptr("cublasLtMatmul", "the bias", bias);
    if (at == CUDA_R_8F_E4M3 && bt == CUDA_R_8F_E4M3 && fp8acc_model())
        emu::submit(s, [=]() { gemm_fp8(ta, tb, m, n, k, al, A, lda, B, ldb, be, C, D, ct, ldd); });
    else
        emu::submit(s, [=]() { gemm(ta, tb, m, n, k, al, A, at, lda, B, bt, ldb, be, C, D, ct, ldd, bias); });
    return CUBLAS_STATUS_SUCCESS;
}
} // extern "C"
