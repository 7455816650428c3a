/* opcheck.h - one gradient check for every op on the tape, driven by a table.
 *
 * An op's test declares a case: its inputs (shape, value range or fill, whether each needs
 * a gradient), the output shape, a function building the op on the tape, the op's forward
 * as a naive double reference (for the reference loss) and as the kernel (for the float64
 * check). opcheck_begin(case, seed) then
 *   1. fills the inputs from test_rng_seed(seed) in declaration order, then lets setup()
 *      draw the op's other arguments (ids, positions, targets), then draws c (d(loss)/dy,
 *      uniform in [-1, 1]; scale_c() may rescale it);
 *   2. builds the op on a fresh tape over NaN-filled arena memory: the output has the
 *      declared shape, exactly one node named `op` is recorded, and the output matches the
 *      reference forward (fwd_atol + fwd_rtol·|ref|);
 *   3. seeds dy = c (scalar_loss: d(loss) = 1 through ksa_tape_backward) and replays;
 *   4. every input that needs a gradient: its gradient against central differences of the
 *      reference loss sum(ref(x) · c) (TEST_BWD_ATOL/RTOL) and, in the float64 build, of the
 *      kernel's loss sum(kernel(x) · c) (STYLE.md §7: 1e-8 + 1e-6·max); every other input:
 *      no gradient buffer at all;
 *   5. builds the op once more with no input needing a gradient: nothing is recorded, the
 *      output needs no gradient and has the same bits as the first.
 * The run stays open for the test's own checks on r.in[i], r.y, r.c; opcheck_end frees it.
 * opcheck() is begin + end.                                                               */
#ifndef KSA_TESTS_OPCHECK_H
#define KSA_TESTS_OPCHECK_H

#include "testutil.h"

#include "autograd/tape.h"

#define OPCHECK_MAX_IN 4
#define OPCHECK_KERNEL_ATOL 1e-8 /* the float64 backward vs differences of its own forward */
#define OPCHECK_KERNEL_RTOL 1e-6

typedef struct {
    const char *name; /* "x": its gradient is "dx" in messages                          */
    int ndim;
    size_t shape[KSA_MAX_DIMS];
    double lo, hi;                                      /* values uniform in [lo, hi) ... */
    void (*fill)(ksa_real *x, size_t n, test_rng *rng); /* ... or from this, when set     */
    int no_grad; /* 1: the input needs no gradient, and must get none                    */
} opcheck_input;

typedef struct {
    const char *op; /* the node's name on the tape ("rmsnorm") */
    int n_in;
    opcheck_input in[OPCHECK_MAX_IN];
    int out_ndim;
    size_t out_shape[KSA_MAX_DIMS];
    void *ctx; /* the op's parameters and non-tensor arguments, passed to the functions */
    /* y = op(x) on the tape; in[i] are the inputs as declared */
    ksa_tensor *(*build)(ksa_tape *tp, ksa_tensor *const *in, void *ctx);
    /* the same y in double from double inputs: the naive reference */
    void (*ref)(double *y, double *const *x, void *ctx);
    /* the same y through the op's forward kernel (only called in the float64 build) */
    void (*kernel)(ksa_real *y, ksa_real *const *x, void *ctx);
    /* optional */
    void (*setup)(void *ctx, test_rng *rng); /* draws ids, positions, ... into ctx      */
    void (*scale_c)(double *c, size_t n, ksa_tensor *const *in, void *ctx);
    int scalar_loss;           /* y is the loss itself: d(loss)/dy = 1, not c            */
    double fwd_atol, fwd_rtol; /* y vs the reference; both 0: TEST_FWD_ATOL/RTOL        */
} opcheck_case;

typedef struct {
    const opcheck_case *cs;
    uint64_t seed;
    ksa_arena arena;
    ksa_tape tp;
    ksa_tensor *in[OPCHECK_MAX_IN], *y;
    double *c;                 /* d(loss)/dy as seeded, y->numel elements                */
    size_t used_before_replay; /* arena.used just before the replay, dy seeded (for
                                * scalar_loss: just before ksa_tape_backward)            */
    size_t used_after_replay;  /* ... and right after it                                 */
} opcheck_run;

void opcheck_begin(opcheck_run *r, const opcheck_case *cs, uint64_t seed);
void opcheck_end(opcheck_run *r);
void opcheck(const opcheck_case *cs, uint64_t seed);

#endif
