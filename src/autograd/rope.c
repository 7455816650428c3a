/* rope.c - y = R(pos[n] * θ) x per head: for i < dh/2, with a = pos[n] * θ_i, θ_i = base^(-2i/dh)
 *   y[n,h,i]        = x[n,h,i]        * cos a - x[n,h,i + dh/2] * sin a
 *   y[n,h,i + dh/2] = x[n,h,i + dh/2] * cos a + x[n,h,i]        * sin a
 * x, y, dx, dy : [N, H, dh] row-major, dh contiguous; the H heads of a row share its position
 * pos          : [N] int32, any non-negative ids (text i, summary rows e.g. 8c+7; KSA_SPEC §2.4)
 * saved (op)   : a cos/sin table ([N, dh/2] each, with a copy of pos) in the arena, made
 *                once per step by the decoder and shared by its RoPE ops (ksa_rope_table);
 *                the bare kernels compute cos/sin per row instead and need no memory.
 * θ_i and the angle pos·θ_i are computed in double: in float the angle's rounding step is
 * ~0.008 rad at p = 65536 (KSA_SPEC §6.1). Reference: KSA_SPEC §6.1 (rotate_half convention,
 * HF apply_rotary_pos_emb); scripts/torch_reference.py.                                     */
#include "rope.h"

#include <math.h>
#include <string.h>

/* Frequencies whose cos/sin a row keeps on the stack at once: any dh works without scratch. */
#define ROPE_BLOCK 64

/* The pairs (i0 + j, i0 + j + dh/2), j < nb, of the H heads of one row: d = R(a) s
 * (accumulate == 0) or d += R(a) s, with cos a = cs[j] and sin a = sign * sn[j]. d and s
 * point at (row, head 0, i0); both halves of a pair are read before either is written, so
 * d may equal s.                                                                          */
static inline void rotate_row(ksa_real *d, const ksa_real *s, const ksa_real *cs,
                              const ksa_real *sn, size_t H, size_t dh, size_t nb, ksa_real sign,
                              int accumulate)
{
    size_t half = dh / 2;
    for (size_t h = 0; h < H; h++) {
        const ksa_real *s0 = s + h * dh, *s1 = s0 + half;
        ksa_real *d0 = d + h * dh, *d1 = d0 + half;
        if (accumulate) {
            for (size_t j = 0; j < nb; j++) {
                ksa_real u = s0[j], v = s1[j], sj = sign * sn[j];
                d0[j] += u * cs[j] - v * sj;
                d1[j] += v * cs[j] + u * sj;
            }
        } else {
            for (size_t j = 0; j < nb; j++) {
                ksa_real u = s0[j], v = s1[j], sj = sign * sn[j];
                d0[j] = u * cs[j] - v * sj;
                d1[j] = v * cs[j] + u * sj;
            }
        }
    }
}

/* θ_i = base^(-2i/dh) for the nb pairs i = i0 ... i0 + nb - 1. */
static void block_thetas(double *theta, size_t i0, size_t nb, double base, size_t dh)
{
    for (size_t j = 0; j < nb; j++)
        theta[j] = pow(base, -(double)(2 * (i0 + j)) / (double)dh);
}

/* cos and sin of p·θ_j for j < nb (in double, rounded once to ksa_real). */
static void block_cos_sin(double p, const double *theta, size_t nb, ksa_real *cs, ksa_real *sn)
{
    for (size_t j = 0; j < nb; j++) {
        double a = p * theta[j];
        cs[j] = (ksa_real)cos(a);
        sn[j] = (ksa_real)sin(a);
    }
}

/* dst = R(sign * a) src (accumulate == 0) or dst += R(sign * a) src (accumulate == 1), with
 * a = pos[n] * θ_i, for every row, head and pair (i, i + dh/2). cos/sin are computed once per
 * (row, i) and reused across the H heads. dst may equal src. Each row is written by one
 * thread and its values do not depend on the thread count.                               */
static void rotate_rows(ksa_real *dst, const ksa_real *src, const int32_t *pos, size_t N, size_t H,
                        size_t dh, double base, ksa_real sign, int accumulate)
{
    KSA_ASSERT(dh % 2 == 0, "rope needs an even head_dim, got %zu", dh);
    KSA_ASSERT(base > 0, "rope base must be positive, got %g", base);
    size_t half = dh / 2;
#pragma omp parallel if (N * H * dh >= KSA_PARALLEL_MIN_ELEMENTS)
    {
        double theta[ROPE_BLOCK];
        ksa_real cs[ROPE_BLOCK], sn[ROPE_BLOCK];
        for (size_t i0 = 0; i0 < half; i0 += ROPE_BLOCK) {
            size_t nb = half - i0 < ROPE_BLOCK ? half - i0 : ROPE_BLOCK;
            block_thetas(theta, i0, nb, base, dh);
#pragma omp for schedule(static)
            for (size_t n = 0; n < N; n++) {
                block_cos_sin((double)pos[n], theta, nb, cs, sn);
                size_t at = n * H * dh + i0;
                rotate_row(dst + at, src + at, cs, sn, H, dh, nb, sign, accumulate);
            }
        }
    }
}

/* ---- forward kernel ------------------------------------------------------------------- */
void ksa_rope_forward(ksa_real *y, const ksa_real *x, const int32_t *pos, size_t N, size_t H,
                      size_t dh, double base)
{
    rotate_rows(y, x, pos, N, H, dh, base, 1, 0);
}

/* ---- backward kernel ------------------------------------------------------------------ *
 * Adds into dx (never overwrites); dx may be NULL. y = R(a) x with R orthogonal, so
 * dx = R(a)^T dy = R(-a) dy:
 *   dx[i]        += dy[i]        * cos a + dy[i + dh/2] * sin a
 *   dx[i + dh/2] += dy[i + dh/2] * cos a - dy[i]        * sin a                            */
void ksa_rope_backward(ksa_real *dx, const ksa_real *dy, const int32_t *pos, size_t N, size_t H,
                       size_t dh, double base)
{
    if (!dx)
        return;
    rotate_rows(dx, dy, pos, N, H, dh, base, -1, 1);
}

/* ---- the cos/sin table --------------------------------------------------------------- *
 * Every layer rotates q and k of the same rows by the same angles, forward and backward: the
 * decoder makes one table per step (not 4 sets of cos/sin per layer) and passes it to the
 * ops; ksa_op_rope(pos) makes its own. The values are those of rotate_rows, bit for bit.   */
/* The table's memory, in the order ksa_rope_table_new fills it; nothing is written. */
static ksa_rope_table *table_alloc(ksa_arena *a, size_t N, size_t dh, double base)
{
    KSA_ASSERT(dh % 2 == 0, "rope needs an even head_dim, got %zu", dh);
    KSA_ASSERT(base > 0, "rope base must be positive, got %g", base);
    size_t half = dh / 2;
    int32_t *pos_copy = ksa_arena_alloc(a, (N ? N : 1) * sizeof *pos_copy);
    ksa_real *cs = ksa_arena_reals(a, N * half + 1), *sn = ksa_arena_reals(a, N * half + 1);
    ksa_rope_table *t = ksa_arena_alloc(a, sizeof *t);
    *t = (ksa_rope_table){.pos = pos_copy, .cs = cs, .sn = sn, .N = N, .dh = dh, .base = base};
    return t;
}

const ksa_rope_table *ksa_rope_table_reserve(ksa_arena *a, size_t N, size_t dh, double base)
{
    return table_alloc(a, N, dh, base);
}

const ksa_rope_table *ksa_rope_table_new(ksa_arena *a, const int32_t *pos, size_t N, size_t dh,
                                         double base)
{
    KSA_ASSERT(N == 0 || pos, "rope: no positions for %zu rows", N);
    for (size_t n = 0; n < N; n++)
        KSA_ASSERT(pos[n] >= 0, "rope: row %zu has the negative position %d", n, (int)pos[n]);
    ksa_rope_table *t = table_alloc(a, N, dh, base);
    size_t half = dh / 2;
    int32_t *pos_copy = (int32_t *)t->pos;
    ksa_real *cs = (ksa_real *)t->cs, *sn = (ksa_real *)t->sn;
    if (N)
        memcpy(pos_copy, pos, N * sizeof *pos);
#pragma omp parallel if (N * dh >= KSA_PARALLEL_MIN_ELEMENTS)
    {
        double theta[ROPE_BLOCK];
        for (size_t i0 = 0; i0 < half; i0 += ROPE_BLOCK) {
            size_t nb = half - i0 < ROPE_BLOCK ? half - i0 : ROPE_BLOCK;
            block_thetas(theta, i0, nb, base, dh);
#pragma omp for schedule(static)
            for (size_t n = 0; n < N; n++)
                block_cos_sin((double)pos[n], theta, nb, cs + n * half + i0, sn + n * half + i0);
        }
    }
    return t;
}

/* rotate_rows with the angles of the first N rows of table t ([N, H, dh] rows). */
static void rotate_rows_table(ksa_real *dst, const ksa_real *src, const ksa_rope_table *t, size_t N,
                              size_t H, ksa_real sign, int accumulate)
{
    size_t dh = t->dh, half = dh / 2;
#pragma omp parallel for schedule(static) if (N * H * dh >= KSA_PARALLEL_MIN_ELEMENTS)
    for (size_t n = 0; n < N; n++)
        rotate_row(dst + n * H * dh, src + n * H * dh, t->cs + n * half, t->sn + n * half, H, dh,
                   half, sign, accumulate);
}

/* ---- tape wiring ---------------------------------------------------------------------- */
typedef struct {
    const ksa_rope_table *table; /* the angles of the rows (its first N), in the arena */
    size_t N, H;
} rope_ctx;

static void rope_node_backward(ksa_tape *tp, const ksa_node *nd)
{
    const rope_ctx *c = nd->ctx;
    ksa_real *dx = ksa_tape_grad(tp, nd->in[0]);
    if (dx && !tp->plan_only) /* dx += R(-a) dy, as ksa_rope_backward */
        rotate_rows_table(dx, ksa_tensor_grad_if_any(nd->out), c->table, c->N, c->H, -1, 1);
}

static ksa_tensor *rope_op(ksa_tape *tp, ksa_tensor *x, const ksa_rope_table *table, size_t H,
                           int in_place)
{
    size_t N = x->shape[0];
    KSA_ASSERT(H > 0, "rope: zero heads");
    size_t dh = N ? x->numel / (N * H) : 0;
    KSA_ASSERT(dh * N * H == x->numel,
               "rope: x has %zu elements in %zu rows, not a multiple of %zu heads per row",
               x->numel, N, H);
    KSA_ASSERT(x->ndim != 3 || (x->shape[1] == H && x->shape[2] == dh),
               "rope: x is [%zu, %zu, %zu] but %zu heads were asked", x->shape[0], x->shape[1],
               x->shape[2], H);
    KSA_ASSERT(dh % 2 == 0, "rope needs an even head_dim, got %zu (x: %zu rows of %zu heads)", dh,
               N, H);
    KSA_ASSERT(table->N >= N && (N == 0 || table->dh == dh),
               "rope: a table of %zu rows of head_dim %zu for x of %zu rows of head_dim %zu",
               table->N, table->dh, N, dh);

    ksa_tensor *y = in_place ? ksa_tensor_alias(tp->arena, x) : ksa_tensor_like(tp->arena, x);
    if (!tp->plan_only)
        rotate_rows_table(y->data, x->data, table, N, H, 1, 0); /* y may be x */
    ksa_node *nd = ksa_tape_record(tp, rope_node_backward, "rope", y, 1, &x, sizeof(rope_ctx));
    if (nd)
        *(rope_ctx *)nd->ctx = (rope_ctx){.table = table, .N = N, .H = H};
    return y;
}

/* x's head_dim, for the table of the ops that take positions (0 for no rows: any table) */
static size_t head_dim(const ksa_tensor *x, size_t H)
{
    size_t N = x->shape[0];
    KSA_ASSERT(H > 0, "rope: zero heads");
    return N ? x->numel / (N * H) : 0;
}

ksa_tensor *ksa_op_rope(ksa_tape *tp, ksa_tensor *x, const int32_t *pos, size_t H, double base)
{
    const ksa_rope_table *t = ksa_rope_table_new(tp->arena, pos, x->shape[0], head_dim(x, H), base);
    return rope_op(tp, x, t, H, 0);
}

ksa_tensor *ksa_op_rope_in_place(ksa_tape *tp, ksa_tensor *x, const int32_t *pos, size_t H,
                                 double base)
{
    const ksa_rope_table *t = ksa_rope_table_new(tp->arena, pos, x->shape[0], head_dim(x, H), base);
    return rope_op(tp, x, t, H, 1);
}

ksa_tensor *ksa_op_rope_table_in_place(ksa_tape *tp, ksa_tensor *x, const ksa_rope_table *table,
                                       size_t H)
{
    return rope_op(tp, x, table, H, 1);
}
