/* opcheck.c - see opcheck.h. */
#include "opcheck.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPCHECK_ARENA_BYTES (1u << 22)

/* sum_i y[i] * c[i], compensated (Neumaier): a difference quotient divides the loss's
 * rounding by 2h = 2e-6, so the summation's own error must stay far below the tolerance
 * however many elements y has.                                                          */
static double dot_compensated(const double *y, const double *c, size_t n)
{
    double s = 0, comp = 0;
    for (size_t i = 0; i < n; i++) {
        double t = y[i] * c[i], u = s + t;
        comp += fabs(s) >= fabs(t) ? (s - u) + t : (t - u) + s;
        s = u;
    }
    return s + comp;
}

/* The two losses whose central differences the gradients are checked against. */
typedef struct {
    const opcheck_case *cs;
    double *x[OPCHECK_MAX_IN];    /* reference inputs, double copies of the tensors' data */
    ksa_real *xr[OPCHECK_MAX_IN]; /* kernel inputs: the tensors' data itself              */
    double *y;                    /* scratch outputs                                      */
    ksa_real *yr;
    const double *c;
    size_t ny;
} loss_ctx;

static double ref_loss(void *p)
{
    loss_ctx *k = p;
    k->cs->ref(k->y, k->x, k->cs->ctx);
    return dot_compensated(k->y, k->c, k->ny);
}

#ifdef KSA_REAL_DOUBLE
static double kernel_loss(void *p)
{
    loss_ctx *k = p;
    k->cs->kernel(k->yr, k->xr, k->cs->ctx);
    return dot_compensated(k->yr, k->c, k->ny); /* ksa_real is double here */
}
#endif

/* "rmsnorm (seed 10): " followed by what, for messages */
__attribute__((format(printf, 2, 3))) static const char *label(const opcheck_run *r,
                                                               const char *fmt, ...)
{
    static char buf[256];
    int n = snprintf(buf, sizeof buf, "%s (seed %" PRIu64 "): ", r->cs->op, r->seed);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    return buf;
}

static void build_checks_shape_and_node(opcheck_run *r)
{
    const opcheck_case *cs = r->cs;
    r->y = cs->build(&r->tp, r->in, cs->ctx);
    assert_int_equal(r->y->ndim, cs->out_ndim);
    for (int d = 0; d < cs->out_ndim; d++)
        assert_int_equal(r->y->shape[d], cs->out_shape[d]);
    assert_int_equal(r->tp.n, 1);
    assert_string_equal(r->tp.nodes[0].op, cs->op);
    assert_true(r->y->requires_grad);
}

/* The op again with no input needing a gradient: nothing recorded, the same output bits. */
static void build_without_gradients(opcheck_run *r)
{
    const opcheck_case *cs = r->cs;
    int wanted[OPCHECK_MAX_IN];
    for (int i = 0; i < cs->n_in; i++)
        wanted[i] = r->in[i]->requires_grad, r->in[i]->requires_grad = 0;
    size_t nodes = r->tp.n;
    ksa_tensor *y = cs->build(&r->tp, r->in, cs->ctx);
    assert_int_equal(r->tp.n, nodes);
    assert_false(y->requires_grad);
    assert_int_equal(y->numel, r->y->numel);
    assert_memory_equal(y->data, r->y->data, y->numel * sizeof(ksa_real));
    for (int i = 0; i < cs->n_in; i++)
        r->in[i]->requires_grad = wanted[i];
}

void opcheck_begin(opcheck_run *r, const opcheck_case *cs, uint64_t seed)
{
    assert_true(cs->n_in >= 1 && cs->n_in <= OPCHECK_MAX_IN);
    memset(r, 0, sizeof *r);
    r->cs = cs;
    r->seed = seed;
    test_rng rng = test_rng_seed(seed);
    ksa_arena_init(&r->arena, OPCHECK_ARENA_BYTES);
    memset(r->arena.base, 0xff, r->arena.capacity); /* NaN garbage: arena memory is uninitialised */
    ksa_tape_init(&r->tp, &r->arena, 4);

    /* 1. inputs, the op's other arguments, c */
    loss_ctx k = {.cs = cs};
    for (int i = 0; i < cs->n_in; i++) {
        const opcheck_input *d = &cs->in[i];
        ksa_tensor *t = r->in[i] = ksa_tensor_new(&r->arena, d->ndim, d->shape);
        t->requires_grad = !d->no_grad;
        if (d->fill)
            d->fill(t->data, t->numel, &rng);
        else
            test_fill_uniform(t->data, t->numel, d->lo, d->hi, &rng);
    }
    if (cs->setup)
        cs->setup(cs->ctx, &rng);
    for (int i = 0; i < cs->n_in; i++)
        k.x[i] = test_to_double(r->in[i]->data, r->in[i]->numel), k.xr[i] = r->in[i]->data;

    /* 2. the op on the tape; its output against the reference */
    build_checks_shape_and_node(r);
    size_t ny = k.ny = r->y->numel;
    r->c = malloc(ny * sizeof *r->c);
    if (cs->scalar_loss) {
        assert_int_equal(ny, 1);
        r->c[0] = 1;
    } else {
        test_fill_uniform_d(r->c, ny, -1, 1, &rng);
        if (cs->scale_c)
            cs->scale_c(r->c, ny, r->in, cs->ctx);
    }
    k.c = r->c;
    k.y = malloc(ny * sizeof *k.y);
    cs->ref(k.y, k.x, cs->ctx);
    double atol = cs->fwd_atol, rtol = cs->fwd_rtol;
    if (atol == 0 && rtol == 0)
        atol = TEST_FWD_ATOL, rtol = TEST_FWD_RTOL;
    ksa_expect_close(r->y->data, k.y, ny, atol, rtol, label(r, "y vs the reference"));

    /* 3. backward from dy = c */
    if (cs->scalar_loss) {
        r->used_before_replay = r->arena.used;
        ksa_tape_backward(&r->tp, r->y);
    } else {
        test_from_double(ksa_tensor_grad(&r->arena, r->y), r->c, ny);
        r->used_before_replay = r->arena.used;
        ksa_tape_replay(&r->tp);
    }
    r->used_after_replay = r->arena.used;

    /* 4. every gradient against differences of the reference and of the kernel */
#ifdef KSA_REAL_DOUBLE
    k.yr = malloc(ny * sizeof *k.yr);
#endif
    for (int i = 0; i < cs->n_in; i++) {
        ksa_tensor *t = r->in[i];
        const char *name = cs->in[i].name;
        if (cs->in[i].no_grad) {
            assert_null(t->grad);
            continue;
        }
        assert_non_null(t->grad);
        double *num = malloc(t->numel * sizeof *num);
        test_fd_grad_d(ref_loss, &k, k.x[i], t->numel, num);
        ksa_expect_close(t->grad, num, t->numel, TEST_BWD_ATOL, TEST_BWD_RTOL,
                         label(r, "d%s vs differences of the reference", name));
#ifdef KSA_REAL_DOUBLE
        test_fd_grad(kernel_loss, &k, t->data, t->numel, num);
        ksa_expect_close_sym(t->grad, num, t->numel, OPCHECK_KERNEL_ATOL, OPCHECK_KERNEL_RTOL,
                             label(r, "d%s vs differences of the kernel", name));
#endif
        free(num);
    }
    for (int i = 0; i < cs->n_in; i++)
        free(k.x[i]);
    free(k.y), free(k.yr);

    /* 5. no gradient wanted: nothing recorded */
    build_without_gradients(r);
}

void opcheck_end(opcheck_run *r)
{
    free(r->c);
    ksa_tape_free(&r->tp);
    ksa_arena_free(&r->arena);
}

void opcheck(const opcheck_case *cs, uint64_t seed)
{
    opcheck_run r;
    opcheck_begin(&r, cs, seed);
    opcheck_end(&r);
}
