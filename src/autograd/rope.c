/* rope.c - y = R(pos[n] * θ) x per head: for i < dh/2, with a = pos[n] * θ_i, θ_i = base^(-2i/dh)
 *   y[n,h,i]        = x[n,h,i]        * cos a - x[n,h,i + dh/2] * sin a
 *   y[n,h,i + dh/2] = x[n,h,i + dh/2] * cos a + x[n,h,i]        * sin a
 * x, y, dx, dy : [N, H, dh] row-major, dh contiguous; the H heads of a row share its position
 * pos          : [N] int32, any non-negative ids (text i, summary rows e.g. 8c+7; KSA_SPEC §2.4)
 * saved        : a copy of pos only; backward recomputes cos/sin (same code path as the
 *                forward) instead of keeping [N, dh/2] tables in the arena.
 * θ_i and the angle pos·θ_i are computed in double: in float the angle's rounding step is
 * ~0.008 rad at p = 65536 (KSA_SPEC §6.1). Reference: KSA_SPEC §6.1 (rotate_half convention,
 * HF apply_rotary_pos_emb); scripts/torch_reference.py.                                     */
#include "rope.h"

#include <math.h>
#include <string.h>

/* Frequencies whose cos/sin a row keeps on the stack at once: any dh works without scratch. */
#define ROPE_BLOCK 64

/* dst = R(sign * a) src (accumulate == 0) or dst += R(sign * a) src (accumulate == 1), with
 * a = pos[n] * θ_i, for every row, head and pair (i, i + dh/2). cos/sin are computed once per
 * (row, i) and reused across the H heads. Both halves of a pair are read before either is
 * written, so dst may equal src. Each row is written by one thread and its values do not
 * depend on the thread count.                                                              */
static void rotate_rows(ksa_real *dst, const ksa_real *src, const int32_t *pos, size_t N, size_t H,
                        size_t dh, double base, double sign, int accumulate)
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
            for (size_t j = 0; j < nb; j++)
                theta[j] = pow(base, -(double)(2 * (i0 + j)) / (double)dh);
#pragma omp for schedule(static)
            for (size_t n = 0; n < N; n++) {
                double p = (double)pos[n];
                for (size_t j = 0; j < nb; j++) {
                    double a = p * theta[j];
                    cs[j] = (ksa_real)cos(a);
                    sn[j] = (ksa_real)(sign * sin(a));
                }
                for (size_t h = 0; h < H; h++) {
                    const ksa_real *s0 = src + (n * H + h) * dh + i0, *s1 = s0 + half;
                    ksa_real *d0 = dst + (n * H + h) * dh + i0, *d1 = d0 + half;
                    if (accumulate) {
                        for (size_t j = 0; j < nb; j++) {
                            ksa_real u = s0[j], v = s1[j];
                            d0[j] += u * cs[j] - v * sn[j];
                            d1[j] += v * cs[j] + u * sn[j];
                        }
                    } else {
                        for (size_t j = 0; j < nb; j++) {
                            ksa_real u = s0[j], v = s1[j];
                            d0[j] = u * cs[j] - v * sn[j];
                            d1[j] = v * cs[j] + u * sn[j];
                        }
                    }
                }
            }
        }
    }
}

/* ---- forward kernel ------------------------------------------------------------------- */
void ksa_rope_forward(ksa_real *y, const ksa_real *x, const int32_t *pos, size_t N, size_t H,
                      size_t dh, double base)
{
    rotate_rows(y, x, pos, N, H, dh, base, 1.0, 0);
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
    rotate_rows(dx, dy, pos, N, H, dh, base, -1.0, 1);
}

/* ---- tape wiring ---------------------------------------------------------------------- */
typedef struct {
    const int32_t *pos; /* [N], a copy in the arena */
    size_t N, H, dh;
    double base;
} rope_ctx;

static void rope_node_backward(ksa_tape *tp, const ksa_node *nd)
{
    const rope_ctx *c = nd->ctx;
    ksa_real *dx = ksa_tape_grad(tp, nd->in[0]);
    if (!tp->plan_only)
        ksa_rope_backward(dx, ksa_tensor_grad_if_any(nd->out), c->pos, c->N, c->H, c->dh, c->base);
}

static ksa_tensor *rope_op(ksa_tape *tp, ksa_tensor *x, const int32_t *pos, size_t H, double base,
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
    KSA_ASSERT(N == 0 || pos, "rope: no positions for %zu rows", N);
    for (size_t n = 0; n < N; n++)
        KSA_ASSERT(pos[n] >= 0, "rope: row %zu has the negative position %d", n, (int)pos[n]);

    ksa_tensor *y = in_place ? ksa_tensor_alias(tp->arena, x) : ksa_tensor_like(tp->arena, x);
    if (!tp->plan_only)
        ksa_rope_forward(y->data, x->data, pos, N, H, dh, base); /* the kernel allows y == x */
    ksa_node *nd = ksa_tape_record(tp, rope_node_backward, "rope", y, 1, &x, sizeof(rope_ctx));
    if (nd) {
        /* the caller's positions may be rebuilt before backward runs: keep a copy */
        int32_t *saved_pos = ksa_arena_alloc(tp->arena, N * sizeof *saved_pos);
        if (N)
            memcpy(saved_pos, pos, N * sizeof *saved_pos);
        *(rope_ctx *)nd->ctx = (rope_ctx){.pos = saved_pos, .N = N, .H = H, .dh = dh, .base = base};
    }
    return y;
}

ksa_tensor *ksa_op_rope(ksa_tape *tp, ksa_tensor *x, const int32_t *pos, size_t H, double base)
{
    return rope_op(tp, x, pos, H, base, 0);
}

ksa_tensor *ksa_op_rope_in_place(ksa_tape *tp, ksa_tensor *x, const int32_t *pos, size_t H,
                                 double base)
{
    return rope_op(tp, x, pos, H, base, 1);
}
