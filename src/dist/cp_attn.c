/* cp_attn.c - attention of one block of a context-parallel sequence (context.h): the
 * summary layers' halo and summary exchange, the causal layers' ring, forward, backward
 * and tape wiring. The kernels are summary_attn.c's on blocks (summary_attn.h, "Blocks");
 * nothing here computes attention itself.
 *
 * Summary layer, block r = text rows [t0, t1) of every sequence, its chunks' summary rows:
 *   forward   post the exchange of the foreign keys (MPI_Ialltoallv) -> attention to the
 *             block's own keys (o, lse) -> wait -> attention of the text queries to the
 *             foreign keys (o2, lse2) -> merge (summary_attn.h).
 *   backward  foreign keys' share first (dq, and dF = the foreign rows' dK/dV) -> post the
 *             return of dF to the owners -> own keys' share -> wait -> each owner adds what
 *             came back into its dK/dV. Both backward calls take the merged o and lse.
 *   Message from block p to block r, per sequence: p's text rows in r's halo, then p's
 *   summary rows among those r needs, k rows then v rows of each (the return carries dK,
 *   dV in the same order).
 * Causal layer (ring): own block first, then round s = 1 ... P - 1: send k, v to r + s,
 *   receive those of r - s (MPI_Sendrecv), merge the partial result; the backward repeats
 *   the rounds and returns dF to r - s while receiving its own block's from r + s.     */
#include "context.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "cp_comm.h"
#include "dist/dist.h"
#include "model/causal_attn.h"

/* ---- moving rows ------------------------------------------------------------------------ */
/* One stream's k and v arrays on this side: rows [first, first + rows) of every sequence. */
typedef struct {
    ksa_real *k, *v;
    size_t rows, first;
} side;

/* [lo, hi) of both streams (0: text, 1: summary) that one message carries. */
typedef struct {
    size_t lo[2], hi[2];
} segment;

enum { TO_MSG, FROM_MSG, ADD_FROM_MSG };

/* Copies the rows of seg between msg and the two streams' arrays, in the message order
 * (sequence, stream, k then v); returns the reals moved. */
static size_t move_rows(ksa_real *msg, const side sd[2], const segment *seg, size_t nseq, size_t w,
                        int how)
{
    size_t at = 0;
    for (size_t n = 0; n < nseq; n++)
        for (int s = 0; s < 2; s++) {
            if (seg->hi[s] <= seg->lo[s])
                continue;
            size_t len = (seg->hi[s] - seg->lo[s]) * w;
            for (int x = 0; x < 2; x++) {
                ksa_real *a = (x ? sd[s].v : sd[s].k);
                if (msg && a) {
                    a += (n * sd[s].rows + seg->lo[s] - sd[s].first) * w;
                    if (how == TO_MSG)
                        memcpy(msg + at, a, len * sizeof *a);
                    else if (how == FROM_MSG)
                        memcpy(a, msg + at, len * sizeof *a);
                    else
                        for (size_t i = 0; i < len; i++)
                            a[i] += msg[at + i];
                }
                at += len;
            }
        }
    return at;
}

static int int_count(size_t n, const char *what)
{
    KSA_ASSERT(n <= INT_MAX,
               "context parallelism: %s of %zu elements exceeds one MPI message (%d); use more "
               "ranks per group or shorter micro-batches",
               what, n, INT_MAX);
    return (int)n;
}

/* ---- summary layers: which rows go where ----------------------------------------------- */
typedef struct {
    const ksa_cp *cp;
    size_t C, S, W, nseq, w; /* w = Hkv * dh */
    size_t t0, t1, cs0, cs1; /* this block: text rows, summary rows */
    size_t h0, ns;           /* its foreign rows: text [h0, t0), summary [0, ns) */
} plan;

static plan make_plan(const ksa_cp *cp, const ksa_summary_attn_dims *d)
{
    plan p = {.cp = cp, .C = d->C, .S = d->S, .W = d->W, .nseq = d->nseq, .w = d->Hkv * d->dh};
    int r = cp->rank;
    p.t0 = cp->start[r], p.t1 = cp->start[r + 1];
    p.cs0 = p.t0 / d->C * d->S, p.cs1 = p.t1 / d->C * d->S;
    ksa_cp_summary_needs(cp, r, d->C, d->S, d->W, &p.h0, &p.ns);
    return p;
}

static size_t lo_of(size_t a, size_t b)
{
    return a > b ? a : b;
}
static size_t hi_of(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* The rows block `from` sends block `to` in a summary layer. */
static segment segment_between(const plan *p, int from, int to)
{
    const ksa_cp *cp = p->cp;
    segment g = {{0, 0}, {0, 0}};
    if (from == to)
        return g;
    size_t h0, ns;
    ksa_cp_summary_needs(cp, to, p->C, p->S, p->W, &h0, &ns);
    size_t s0 = cp->start[from], e0 = cp->start[from + 1];
    g.lo[0] = lo_of(h0, s0), g.hi[0] = hi_of(cp->start[to], e0);
    g.lo[1] = s0 / p->C * p->S, g.hi[1] = hi_of(ns, e0 / p->C * p->S);
    return g;
}

/* This block's own arrays (k, v of the op's inputs, or their gradients) and its foreign ones. */
static void own_sides(const plan *p, ksa_real *k, ksa_real *v, side sd[2])
{
    size_t T = p->t1 - p->t0, NS = p->cs1 - p->cs0, text = p->nseq * T * p->w;
    sd[0] = (side){k, v, T, p->t0};
    sd[1] = (side){k ? k + text : NULL, v ? v + text : NULL, NS, p->cs0};
}

typedef struct {
    ksa_real *kt, *vt, *ks, *vs; /* [nseq, t0 - h0, w] and [nseq, ns, w] */
} foreign;

static void foreign_sides(const plan *p, const foreign *f, side sd[2])
{
    sd[0] = (side){f->kt, f->vt, p->t0 - p->h0, p->h0};
    sd[1] = (side){f->ks, f->vs, p->ns, 0};
}

static foreign foreign_alloc(ksa_arena *a, const plan *p, int zeroed)
{
    size_t nt = p->nseq * (p->t0 - p->h0) * p->w, ns = p->nseq * p->ns * p->w;
    foreign f = {ksa_arena_reals(a, nt + 1), ksa_arena_reals(a, nt + 1), ksa_arena_reals(a, ns + 1),
                 ksa_arena_reals(a, ns + 1)};
    if (zeroed) {
        memset(f.kt, 0, nt * sizeof(ksa_real)), memset(f.vt, 0, nt * sizeof(ksa_real));
        memset(f.ks, 0, ns * sizeof(ksa_real)), memset(f.vs, 0, ns * sizeof(ksa_real));
    }
    return f;
}

/* One exchange of a summary layer: the forward's keys (send = own, recv = foreign) or the
 * backward's return (send = foreign gradients, recv = own gradients, added). */
typedef struct {
    int P;
    int *scount, *sdispl, *rcount, *rdispl;
    ksa_real *sbuf, *rbuf;
    MPI_Request req;
} exchange;

static void exchange_post(exchange *x, ksa_arena *a, const plan *p, const side send_sd[2],
                          int backward, ksa_cp *cp, int active)
{
    int P = cp->P, me = cp->rank;
    x->P = P;
    x->scount = ksa_arena_alloc(a, 4 * (size_t)P * sizeof(int));
    x->sdispl = x->scount + P, x->rcount = x->sdispl + P, x->rdispl = x->rcount + P;
    size_t stot = 0, rtot = 0;
    for (int q = 0; q < P; q++) {
        /* forward: I send q what q needs of mine; backward: I return what I received */
        segment sg = backward ? segment_between(p, q, me) : segment_between(p, me, q);
        segment rg = backward ? segment_between(p, me, q) : segment_between(p, q, me);
        size_t sn = move_rows(NULL, send_sd, &sg, p->nseq, p->w, TO_MSG);
        size_t rn = move_rows(NULL, send_sd, &rg, p->nseq, p->w, TO_MSG);
        x->sdispl[q] = int_count(stot, "a summary-layer exchange");
        x->rdispl[q] = int_count(rtot, "a summary-layer exchange");
        x->scount[q] = int_count(sn, "a summary-layer message");
        x->rcount[q] = int_count(rn, "a summary-layer message");
        stot += sn, rtot += rn;
    }
    int_count(stot, "a summary-layer exchange");
    int_count(rtot, "a summary-layer exchange");
    x->sbuf = ksa_arena_reals(a, stot + 1);
    x->rbuf = ksa_arena_reals(a, rtot + 1);
    x->req = MPI_REQUEST_NULL;
    if (!active)
        return;
    for (int q = 0; q < P; q++) {
        segment sg = backward ? segment_between(p, q, me) : segment_between(p, me, q);
        move_rows(x->sbuf + x->sdispl[q], send_sd, &sg, p->nseq, p->w, TO_MSG);
    }
    cp->traffic.summary_bytes += stot * sizeof(ksa_real);
    int rc = MPI_Ialltoallv(x->sbuf, x->scount, x->sdispl, KSA_MPI_REAL, x->rbuf, x->rcount,
                            x->rdispl, KSA_MPI_REAL, cp->comm->comm, &x->req);
    KSA_ASSERT(rc == MPI_SUCCESS, "context parallelism: MPI_Ialltoallv failed");
}

static void exchange_finish(exchange *x, const plan *p, const side recv_sd[2], int backward,
                            const ksa_cp *cp, int active)
{
    if (!active)
        return;
    ksa_dist_enter_collective();
    int rc = MPI_Wait(&x->req, MPI_STATUS_IGNORE);
    ksa_dist_leave_collective();
    KSA_ASSERT(rc == MPI_SUCCESS, "context parallelism: MPI_Wait of the exchange failed");
    int me = cp->rank;
    for (int q = 0; q < x->P; q++) {
        segment rg = backward ? segment_between(p, me, q) : segment_between(p, q, me);
        move_rows(x->rbuf + x->rdispl[q], recv_sd, &rg, p->nseq, p->w,
                  backward ? ADD_FROM_MSG : FROM_MSG);
    }
}

/* The dimensions of the call over the foreign keys (text queries only). */
static ksa_summary_attn_dims foreign_dims(const plan *p, const ksa_summary_attn_dims *d)
{
    ksa_summary_attn_dims f = *d;
    f.kt0 = p->h0, f.TK = p->t0 - p->h0, f.ks0 = 0, f.NSK = p->ns;
    return f;
}

static int has_foreign(const plan *p)
{
    return p->t0 > p->h0 || p->ns > 0;
}

static size_t workspace_bytes(const ksa_summary_attn_dims *d, int backward)
{
    int nt = ksa_threads_get();
    return backward ? ksa_summary_attn_backward_workspace_size(d, nt)
                    : ksa_summary_attn_forward_workspace_size(d, nt);
}

static void *scratch(ksa_arena *a, const ksa_summary_attn_dims *d, int backward, size_t *bytes)
{
    *bytes = workspace_bytes(d, backward);
    return ksa_arena_alloc(a, *bytes);
}

/* A workspace for the ring's calls: the block's own keys and the largest block's. */
static void *ring_scratch(ksa_arena *a, const ksa_summary_attn_dims *d, size_t most_rows,
                          int backward, size_t *bytes)
{
    ksa_summary_attn_dims big = *d;
    big.kt0 = 0, big.TK = most_rows;
    size_t own = workspace_bytes(d, backward), other = workspace_bytes(&big, backward);
    *bytes = own > other ? own : other;
    return ksa_arena_alloc(a, *bytes);
}

/* ---- summary layers: tape wiring ------------------------------------------------------- */
typedef struct {
    ksa_summary_attn_dims d;
    ksa_cp *cp;
    ksa_real *lse; /* [nseq*T + nseq*NS, Hq], merged */
    foreign f;     /* the foreign keys and values, kept from the forward */
} cp_summary_ctx;

static ksa_attn_in cin(const ksa_real *x, size_t text)
{
    return (ksa_attn_in){x, x ? x + text : NULL};
}
static ksa_attn_out cout(ksa_real *x, size_t text)
{
    return (ksa_attn_out){x, x ? x + text : NULL};
}

static void cp_summary_backward(ksa_tape *tp, const ksa_node *nd)
{
    const cp_summary_ctx *c = nd->ctx;
    const ksa_summary_attn_dims *d = &c->d;
    plan p = make_plan(c->cp, d);
    size_t tq = d->nseq * d->T * d->Hq * d->dh, tk = d->nseq * d->T * p.w;
    ksa_real *dq = ksa_tape_grad(tp, nd->in[0]), *dk = ksa_tape_grad(tp, nd->in[1]);
    ksa_real *dv = ksa_tape_grad(tp, nd->in[2]);
    const ksa_real *dout = ksa_tensor_grad_if_any(nd->out);
    int run = !tp->plan_only && dout;
    size_t mark = ksa_arena_mark(tp->arena);
    ksa_attn_qkv own = {cin(nd->in[0]->data, tq), cin(nd->in[1]->data, tk),
                        cin(nd->in[2]->data, tk)};
    ksa_attn_in o = cin(nd->out->data, tq), lse = cin(c->lse, d->nseq * d->T * d->Hq);
    /* the foreign keys' share first: its dK/dV go back while the own share is computed */
    foreign df = foreign_alloc(tp->arena, &p, !tp->plan_only);
    if (run && has_foreign(&p)) {
        ksa_summary_attn_dims fd = foreign_dims(&p, d);
        size_t bytes;
        void *ws = scratch(tp->arena, &fd, 1, &bytes);
        ksa_attn_qkv in = {{own.q.text, NULL}, {c->f.kt, c->f.ks}, {c->f.vt, c->f.vs}};
        ksa_summary_attn_backward((ksa_attn_out){dq, NULL}, (ksa_attn_out){df.kt, df.ks},
                                  (ksa_attn_out){df.vt, df.vs}, (ksa_attn_in){dout, NULL}, in,
                                  (ksa_attn_in){o.text, NULL}, (ksa_attn_in){lse.text, NULL}, ws,
                                  bytes, &fd);
    }
    side fsd[2], osd[2];
    foreign_sides(&p, &df, fsd);
    own_sides(&p, dk, dv, osd);
    exchange x;
    exchange_post(&x, tp->arena, &p, fsd, 1, c->cp, !tp->plan_only);
    if (run) {
        size_t bytes;
        void *ws = scratch(tp->arena, d, 1, &bytes);
        ksa_summary_attn_backward(cout(dq, tq), cout(dk, tk), cout(dv, tk), cin(dout, tq), own, o,
                                  lse, ws, bytes, d);
    }
    exchange_finish(&x, &p, osd, 1, c->cp, !tp->plan_only);
    ksa_arena_release(tp->arena, mark);
    c->cp->traffic.summary_calls++;
}

static void check_rows(const ksa_tensor *x, const char *name, size_t rows, size_t width)
{
    KSA_ASSERT(x->shape[0] == rows && x->numel == rows * width,
               "context-parallel attention: %s has %zu rows and %zu elements, expected [%zu, %zu]",
               name, x->shape[0], x->numel, rows, width);
}

ksa_tensor *ksa_cp_summary_attention(ksa_tape *tp, ksa_cp *cp, ksa_tensor *q, ksa_tensor *k,
                                     ksa_tensor *v, const ksa_summary_attn_dims *d)
{
    if (!cp || cp->P == 1)
        return ksa_op_summary_attention(tp, q, k, v, d);
    KSA_ASSERT(d->t0 == ksa_cp_block_start(cp) && d->T == ksa_cp_block_len(cp) && d->TK == 0 &&
                   d->NSK == 0,
               "context-parallel attention: dimensions of another block (t0 %zu, T %zu)", d->t0,
               d->T);
    plan p = make_plan(cp, d);
    size_t NS = ksa_summary_attn_summary_rows(d), rows = d->nseq * (d->T + NS);
    size_t qw = d->Hq * d->dh, tq = d->nseq * d->T * qw, tk = d->nseq * d->T * p.w;
    check_rows(q, "q", rows, qw), check_rows(k, "k", rows, p.w), check_rows(v, "v", rows, p.w);
    ksa_arena *a = tp->arena;
    ksa_tensor *o = ksa_tensor_like(a, q);
    ksa_real *lse = ksa_arena_reals(a, rows * d->Hq);
    foreign f = foreign_alloc(a, &p, 0); /* kept for the backward */
    int active = !tp->plan_only;
    size_t mark = ksa_arena_mark(a);
    side osd[2], fsd[2];
    own_sides(&p, k->data, v->data, osd);
    foreign_sides(&p, &f, fsd);
    exchange x;
    exchange_post(&x, a, &p, osd, 0, cp, active);
    ksa_attn_qkv own = {cin(q->data, tq), cin(k->data, tk), cin(v->data, tk)};
    if (active) {
        size_t bytes;
        void *ws = scratch(a, d, 0, &bytes);
        ksa_summary_attn_forward(cout(o->data, tq), cout(lse, d->nseq * d->T * d->Hq), own, ws,
                                 bytes, d);
    }
    exchange_finish(&x, &p, fsd, 0, cp, active);
    if (has_foreign(&p)) {
        ksa_summary_attn_dims fd = foreign_dims(&p, d);
        size_t n = d->nseq * d->T, bytes;
        ksa_real *o2 = ksa_arena_reals(a, n * qw), *lse2 = ksa_arena_reals(a, n * d->Hq);
        void *ws = scratch(a, &fd, 0, &bytes);
        if (active) {
            ksa_attn_qkv in = {{q->data, NULL}, {f.kt, f.ks}, {f.vt, f.vs}};
            ksa_summary_attn_forward((ksa_attn_out){o2, NULL}, (ksa_attn_out){lse2, NULL}, in, ws,
                                     bytes, &fd);
            ksa_summary_attn_merge(o->data, lse, o2, lse2, n * d->Hq, d->dh);
        }
    }
    ksa_arena_release(a, mark);
    cp->traffic.summary_calls++;
    ksa_node *nd = ksa_tape_record(tp, cp_summary_backward, "cp_summary_attention", o, 3,
                                   (ksa_tensor *[]){q, k, v}, sizeof(cp_summary_ctx));
    if (nd)
        *(cp_summary_ctx *)nd->ctx = (cp_summary_ctx){.d = *d, .cp = cp, .lse = lse, .f = f};
    return o;
}

/* ---- causal layers: the ring ------------------------------------------------------------ */
typedef struct {
    ksa_cp *cp;
    size_t nseq, Hq, Hkv, dh;
    ksa_real *lse; /* [nseq*T, Hq], merged */
} cp_ring_ctx;

static ksa_summary_attn_dims ring_dims(const ksa_cp *cp, size_t nseq, size_t Hq, size_t Hkv,
                                       size_t dh)
{
    ksa_summary_attn_dims d = {.nseq = nseq,
                               .T = ksa_cp_block_len(cp),
                               .C = 1,
                               .S = 0,
                               .W = SIZE_MAX,
                               .Hq = Hq,
                               .Hkv = Hkv,
                               .dh = dh,
                               .t0 = ksa_cp_block_start(cp)};
    return d;
}

/* The keys of block src as the foreign keys of a call. */
static ksa_summary_attn_dims ring_foreign(const ksa_cp *cp, ksa_summary_attn_dims d, int src)
{
    d.kt0 = cp->start[src], d.TK = cp->start[src + 1] - cp->start[src];
    return d;
}

static size_t block_reals(const ksa_cp *cp, int b, size_t nseq, size_t w)
{
    return nseq * (cp->start[b + 1] - cp->start[b]) * w;
}

/* One round's MPI_Sendrecv: n_send reals to dst, n_recv from src (MPI_PROC_NULL: none). */
static void ring_sendrecv(ksa_cp *cp, const ksa_real *sbuf, size_t n_send, int dst, ksa_real *rbuf,
                          size_t n_recv, int src, int tag)
{
    int d = dst >= 0 && dst < cp->P ? dst : MPI_PROC_NULL;
    int s = src >= 0 && src < cp->P ? src : MPI_PROC_NULL;
    ksa_dist_enter_collective();
    int rc = MPI_Sendrecv(sbuf, d == MPI_PROC_NULL ? 0 : int_count(n_send, "a ring message"),
                          KSA_MPI_REAL, d, tag, rbuf,
                          s == MPI_PROC_NULL ? 0 : int_count(n_recv, "a ring message"),
                          KSA_MPI_REAL, s, tag, cp->comm->comm, MPI_STATUS_IGNORE);
    ksa_dist_leave_collective();
    KSA_ASSERT(rc == MPI_SUCCESS, "context parallelism: MPI_Sendrecv of the ring failed");
    if (d != MPI_PROC_NULL)
        cp->traffic.ring_bytes += n_send * sizeof(ksa_real);
}

/* The round-s exchange of k and v: this block's to r + s, block r - s's into buf [2, n]. */
static void ring_keys(ksa_cp *cp, const ksa_real *k, const ksa_real *v, size_t mine, ksa_real *sbuf,
                      ksa_real *rbuf, size_t theirs, int s)
{
    memcpy(sbuf, k, mine * sizeof *k);
    memcpy(sbuf + mine, v, mine * sizeof *v);
    ring_sendrecv(cp, sbuf, 2 * mine, cp->rank + s, rbuf, 2 * theirs, cp->rank - s, 1);
}

static size_t max_block_reals(const ksa_cp *cp, size_t nseq, size_t w)
{
    size_t m = 0;
    for (int b = 0; b < cp->P; b++) {
        size_t n = block_reals(cp, b, nseq, w);
        m = n > m ? n : m;
    }
    return m;
}

static void cp_ring_backward(ksa_tape *tp, const ksa_node *nd)
{
    const cp_ring_ctx *c = nd->ctx;
    ksa_cp *cp = c->cp;
    ksa_summary_attn_dims d = ring_dims(cp, c->nseq, c->Hq, c->Hkv, c->dh);
    size_t w = c->Hkv * c->dh, mine = block_reals(cp, cp->rank, c->nseq, w);
    size_t most = max_block_reals(cp, c->nseq, w);
    ksa_real *dq = ksa_tape_grad(tp, nd->in[0]), *dk = ksa_tape_grad(tp, nd->in[1]);
    ksa_real *dv = ksa_tape_grad(tp, nd->in[2]);
    const ksa_real *dout = ksa_tensor_grad_if_any(nd->out);
    const ksa_real *q = nd->in[0]->data, *k = nd->in[1]->data, *v = nd->in[2]->data;
    int active = !tp->plan_only, run = active && dout;
    size_t mark = ksa_arena_mark(tp->arena), bytes;
    ksa_real *sbuf = ksa_arena_reals(tp->arena, 2 * most + 1);
    ksa_real *rbuf = ksa_arena_reals(tp->arena, 2 * most + 1);
    ksa_real *gbuf = ksa_arena_reals(tp->arena, 2 * most + 1); /* dF of block r - s */
    ksa_real *back = ksa_arena_reals(tp->arena, 2 * most + 1); /* mine, from block r + s */
    void *ws = ring_scratch(tp->arena, &d, most / (c->nseq * w), 1, &bytes);
    if (run)
        ksa_summary_attn_backward(
            (ksa_attn_out){dq, NULL}, (ksa_attn_out){dk, NULL}, (ksa_attn_out){dv, NULL},
            (ksa_attn_in){dout, NULL}, (ksa_attn_qkv){{q, NULL}, {k, NULL}, {v, NULL}},
            (ksa_attn_in){nd->out->data, NULL}, (ksa_attn_in){c->lse, NULL}, ws, bytes, &d);
    for (int s = 1; s < cp->P; s++) {
        int src = cp->rank - s, dst = cp->rank + s;
        size_t theirs = src >= 0 ? block_reals(cp, src, c->nseq, w) : 0;
        size_t back_n = dst < cp->P ? mine : 0;
        if (active)
            ring_keys(cp, k, v, mine, sbuf, rbuf, theirs, s);
        if (theirs && active) {
            memset(gbuf, 0, 2 * theirs * sizeof *gbuf);
            if (run) {
                ksa_summary_attn_dims fd = ring_foreign(cp, d, src);
                ksa_summary_attn_backward(
                    (ksa_attn_out){dq, NULL}, (ksa_attn_out){gbuf, NULL},
                    (ksa_attn_out){gbuf + theirs, NULL}, (ksa_attn_in){dout, NULL},
                    (ksa_attn_qkv){{q, NULL}, {rbuf, NULL}, {rbuf + theirs, NULL}},
                    (ksa_attn_in){nd->out->data, NULL}, (ksa_attn_in){c->lse, NULL}, ws, bytes,
                    &fd);
            }
        }
        if (active) {
            ring_sendrecv(cp, gbuf, 2 * theirs, src, back, 2 * back_n, dst, 2);
            for (size_t i = 0; back_n && i < mine; i++) {
                if (dk)
                    dk[i] += back[i];
                if (dv)
                    dv[i] += back[mine + i];
            }
        }
    }
    ksa_arena_release(tp->arena, mark);
    cp->traffic.ring_calls++;
}

ksa_tensor *ksa_cp_causal_attention(ksa_tape *tp, ksa_cp *cp, ksa_tensor *q, ksa_tensor *k,
                                    ksa_tensor *v, size_t nseq, size_t Hq, size_t Hkv, size_t dh)
{
    if (!cp || cp->P == 1)
        return ksa_op_causal_attention(tp, q, k, v, nseq, Hq, Hkv);
    ksa_summary_attn_dims d = ring_dims(cp, nseq, Hq, Hkv, dh);
    size_t rows = nseq * d.T, w = Hkv * dh, mine = rows * w, most = max_block_reals(cp, nseq, w);
    check_rows(q, "q", rows, Hq * dh), check_rows(k, "k", rows, w), check_rows(v, "v", rows, w);
    ksa_arena *a = tp->arena;
    int active = !tp->plan_only;
    ksa_tensor *o = ksa_tensor_like(a, q);
    ksa_real *lse = ksa_arena_reals(a, rows * Hq);
    size_t mark = ksa_arena_mark(a), bytes;
    ksa_real *sbuf = ksa_arena_reals(a, 2 * most + 1), *rbuf = ksa_arena_reals(a, 2 * most + 1);
    ksa_real *o2 = ksa_arena_reals(a, rows * Hq * dh), *lse2 = ksa_arena_reals(a, rows * Hq);
    void *ws = ring_scratch(a, &d, most / (nseq * w), 0, &bytes);
    if (active)
        ksa_summary_attn_forward((ksa_attn_out){o->data, NULL}, (ksa_attn_out){lse, NULL},
                                 (ksa_attn_qkv){{q->data, NULL}, {k->data, NULL}, {v->data, NULL}},
                                 ws, bytes, &d);
    for (int s = 1; s < cp->P; s++) {
        int src = cp->rank - s;
        size_t theirs = src >= 0 ? block_reals(cp, src, nseq, w) : 0;
        if (!active)
            continue;
        ring_keys(cp, k->data, v->data, mine, sbuf, rbuf, theirs, s);
        if (!theirs)
            continue;
        ksa_summary_attn_dims fd = ring_foreign(cp, d, src);
        ksa_summary_attn_forward(
            (ksa_attn_out){o2, NULL}, (ksa_attn_out){lse2, NULL},
            (ksa_attn_qkv){{q->data, NULL}, {rbuf, NULL}, {rbuf + theirs, NULL}}, ws, bytes, &fd);
        ksa_summary_attn_merge(o->data, lse, o2, lse2, rows * Hq, dh);
    }
    ksa_arena_release(a, mark);
    cp->traffic.ring_calls++;
    ksa_node *nd = ksa_tape_record(tp, cp_ring_backward, "cp_causal_attention", o, 3,
                                   (ksa_tensor *[]){q, k, v}, sizeof(cp_ring_ctx));
    if (nd)
        *(cp_ring_ctx *)nd->ctx =
            (cp_ring_ctx){.cp = cp, .nseq = nseq, .Hq = Hq, .Hkv = Hkv, .dh = dh, .lse = lse};
    return o;
}
