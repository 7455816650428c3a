/* decoder.c - the KSA decoder forward (KSA_SPEC §6.2) over the two streams (DESIGN.md §2).
 *
 * h : [N, D], N = nseq*T text rows then nseq*NS summary rows (model/layout.h)
 * Summary layer l (window W_l): every row goes through the pre-norm block; text and summary
 *   rows may use different input norms, q/k/v projections and q/k norms (§5); attention
 *   follows the §3 rule (summary_attn.c); o_proj, post-norm and MLP are shared.
 * Bypass layer: text rows only, causal attention (causal_attn.c), or with
 *   layer_sliding_window = N the window t-N ... t (summary_attn.c with C = 1, S = 0, W = N);
 *   summary rows unchanged.
 * sliding_chunk_attention: summary layers without summary tokens (S = 0, no summary rows):
 *   the text part of the §3 rule, own chunk causally + W previous chunks.
 * The LM head reads the text rows; the loss is the cross-entropy over all T targets of
 * every row (§6.3). Reference: scripts/torch_reference.py.                              */
#include "decoder.h"

#include "core/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/add.h"
#include "autograd/concat.h"
#include "autograd/distill.h"
#include "autograd/embedding.h"
#include "autograd/lerp.h"
#include "autograd/linear.h"
#include "autograd/rmsnorm.h"
#include "autograd/rope.h"
#include "autograd/swiglu.h"
#include "autograd/xent.h"
#include "dist/context.h"
#include "model/causal_attn.h"
#include "model/layout.h"
#include "model/summary_attn.h"

/* ---- parameters ----------------------------------------------------------------------- */
static long add_param(ksa_model *m, const char *name, int ndim, size_t d0, size_t d1)
{
    return (long)ksa_params_add(&m->params, name, ndim, d0, d1);
}

static long add_layer_param(ksa_model *m, size_t i, const char *suffix, int ndim, size_t d0,
                            size_t d1)
{
    char name[KSA_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "model.layers.%zu.%s", i, suffix);
    return add_param(m, name, ndim, d0, d1);
}

/* A summary-only parameter of layer i with the shape of its shared twin (KSA_SPEC §5). */
static long add_summary_twin(ksa_model *m, size_t i, const char *suffix, long twin)
{
    const ksa_param t = m->params.table[twin]; /* a copy: adding may move the table */
    long k = add_layer_param(m, i, suffix, t.ndim, t.shape[0], t.shape[1]);
    ksa_params_set_role(&m->params, (size_t)k, t.role, 1, twin);
    return k;
}

ksa_status ksa_model_init(ksa_model *m, const ksa_model_config *c)
{
    return ksa_model_init_for_ranks(m, c, 1);
}

ksa_status ksa_model_init_for_ranks(ksa_model *m, const ksa_model_config *c, int n_ranks)
{
    KSA_TRY(ksa_model_declare_for_ranks(m, c, n_ranks));
    ksa_params_alloc(&m->params);
    return KSA_OK;
}

ksa_status ksa_model_declare_for_ranks(ksa_model *m, const ksa_model_config *c, int n_ranks)
{
    KSA_ASSERT(n_ranks >= 1, "rank count %d", n_ranks);
    KSA_TRY(ksa_model_declare(m, c));
    ksa_params_pad(&m->params, 16 * (size_t)n_ranks); /* equal, 64-byte aligned slices */
    return KSA_OK;
}

ksa_status ksa_model_declare(ksa_model *m, const ksa_model_config *c)
{
    memset(m, 0, sizeof *m);
    m->config = *c;
    m->summary_mix = 1;
    KSA_TRY(ksa_model_config_resolve(c, &m->layout));
    const ksa_model_layout *l = &m->layout;
    m->D = (size_t)c->hidden_size;
    m->I = (size_t)c->intermediate_size;
    m->V = (size_t)c->vocab_size;
    m->Hq = (size_t)c->num_attention_heads;
    m->Hkv = (size_t)c->num_key_value_heads;
    m->dh = (size_t)c->head_dim;
    size_t D = m->D, I = m->I, V = m->V, q_out = m->Hq * m->dh, kv_out = m->Hkv * m->dh;

    ksa_params_init(&m->params);
    m->layers = calloc(l->n_layers, sizeof *m->layers);
    KSA_ASSERT(m->layers, "out of memory for %zu layers", l->n_layers);
    m->embed_tokens = add_param(m, "model.embed_tokens.weight", 2, V, D);
    ksa_params_set_role(&m->params, (size_t)m->embed_tokens, KSA_ROLE_EMBEDDING, 0, -1);
    m->summary_embedding = -1;
    if (l->ksa && l->independent_embedding) {
        m->summary_embedding = add_param(m, "summary_embedding.weight", 2, l->S, D);
        ksa_params_set_role(&m->params, (size_t)m->summary_embedding, KSA_ROLE_EMBEDDING, 1, -1);
    }
    for (size_t i = 0; i < l->n_layers; i++) {
        ksa_layer_params *lp = &m->layers[i];
        int sa = l->ksa && l->is_summary[i];
        lp->input_layernorm = add_layer_param(m, i, "input_layernorm.weight", 1, D, 0);
        lp->input_layernorm_summary =
            sa && l->independent_norm
                ? add_summary_twin(m, i, "input_layernorm_summary.weight", lp->input_layernorm)
                : -1;
        lp->q_proj = add_layer_param(m, i, "self_attn.q_proj.weight", 2, q_out, D);
        lp->k_proj = add_layer_param(m, i, "self_attn.k_proj.weight", 2, kv_out, D);
        lp->v_proj = add_layer_param(m, i, "self_attn.v_proj.weight", 2, kv_out, D);
        lp->o_proj = add_layer_param(m, i, "self_attn.o_proj.weight", 2, D, q_out);
        lp->q_norm = add_layer_param(m, i, "self_attn.q_norm.weight", 1, m->dh, 0);
        lp->k_norm = add_layer_param(m, i, "self_attn.k_norm.weight", 1, m->dh, 0);
        lp->q_proj_summary = lp->k_proj_summary = lp->v_proj_summary = -1;
        lp->q_norm_summary = lp->k_norm_summary = -1;
        if (sa && l->independent_qkv) {
            lp->q_proj_summary =
                add_summary_twin(m, i, "self_attn.q_proj_summary.weight", lp->q_proj);
            lp->k_proj_summary =
                add_summary_twin(m, i, "self_attn.k_proj_summary.weight", lp->k_proj);
            lp->v_proj_summary =
                add_summary_twin(m, i, "self_attn.v_proj_summary.weight", lp->v_proj);
            if (l->independent_qk_norm) {
                lp->q_norm_summary =
                    add_summary_twin(m, i, "self_attn.q_norm_summary.weight", lp->q_norm);
                lp->k_norm_summary =
                    add_summary_twin(m, i, "self_attn.k_norm_summary.weight", lp->k_norm);
            }
        }
        lp->post_attention_layernorm =
            add_layer_param(m, i, "post_attention_layernorm.weight", 1, D, 0);
        lp->gate_proj = add_layer_param(m, i, "mlp.gate_proj.weight", 2, I, D);
        lp->up_proj = add_layer_param(m, i, "mlp.up_proj.weight", 2, I, D);
        lp->down_proj = add_layer_param(m, i, "mlp.down_proj.weight", 2, D, I);
    }
    m->norm = add_param(m, "model.norm.weight", 1, D, 0);
    m->lm_head = -1;
    if (!c->tie_word_embeddings) {
        m->lm_head = add_param(m, "lm_head.weight", 2, V, D);
        ksa_params_set_role(&m->params, (size_t)m->lm_head, KSA_ROLE_LM_HEAD, 0, -1);
    }
    return KSA_OK;
}

void ksa_model_free(ksa_model *m)
{
    ksa_params_free(&m->params);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

/* ---- initialisation (KSA_SPEC §9.7) ---------------------------------------------------- */
void ksa_model_init_weights(ksa_model *m, uint64_t seed)
{
    ksa_params *p = &m->params;
    for (size_t i = 0; i < p->n; i++) {
        const ksa_param *e = &p->table[i];
        ksa_real *w = p->data + e->offset;
        /* one stream per parameter: independent of declaration order and rank count */
        ksa_rng s = ksa_rng_at(seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(i + 1)));
        switch (e->role) {
        case KSA_ROLE_NORM: /* every RMSNorm weight */
            for (size_t j = 0; j < e->numel; j++)
                w[j] = 1;
            break;
        case KSA_ROLE_EMBEDDING: /* embed_tokens, summary_embedding */
            for (size_t j = 0; j < e->numel; j++)
                w[j] = (ksa_real)(0.02 * ksa_rng_normal(&s));
            break;
        case KSA_ROLE_LM_HEAD: { /* LeCun normal */
            double std = sqrt(1.0 / (double)e->shape[1]);
            for (size_t j = 0; j < e->numel; j++)
                w[j] = (ksa_real)(std * ksa_rng_normal(&s));
            break;
        }
        case KSA_ROLE_LINEAR: { /* attention and MLP linears: Xavier uniform, gain 1 */
            double a = sqrt(6.0 / (double)(e->shape[0] + e->shape[1]));
            for (size_t j = 0; j < e->numel; j++)
                w[j] = (ksa_real)(a * (2 * ksa_rng_uniform_open(&s) - 1));
            break;
        }
        }
    }
}

/* ---- forward -------------------------------------------------------------------------- */
static ksa_tensor *P(ksa_model *m, long idx)
{
    KSA_ASSERT(idx >= 0, "parameter missing");
    return ksa_params_tensor(&m->params, (size_t)idx);
}

typedef struct {
    ksa_tape *tp;
    ksa_arena *a;
    ksa_cp *cp;                 /* context parallelism: this rank's block, or NULL */
    size_t t0;                  /* the block's first text row in the sequence (0: whole) */
    size_t nseq, T, NS, Nt, Ns; /* T: text rows of the block */
    const int32_t *pos;         /* [Nt + Ns] all rows */
    const ksa_rope_table *rope; /* cos/sin of pos, for the q and k of every layer */
    /* attention distillation (KSA_SPEC §9.2): teacher = every layer plain causal attention
     * over the text; capture[i] (when capture is not NULL) receives the text rows of summary
     * layer i's attention block output, after o_proj and before the residual add */
    int teacher;
    size_t layer; /* the layer being built */
    ksa_tensor **capture;
} step_ctx;

/* Applies the text-row op f_text to rows [0, Nt) and f_sum to rows [Nt, Nt + Ns), or one op
 * to all rows when both are the same weight. */
static ksa_tensor *rows_of(step_ctx *s, ksa_tensor *x, int summary)
{
    return summary ? ksa_tensor_rows(s->a, x, s->Nt, s->Ns) : ksa_tensor_rows(s->a, x, 0, s->Nt);
}

/* RMSNorm of all rows with w_text, or, with two streams and a summary weight, of the text rows
 * with (w_text, eps) and the summary rows with (w_sum, eps_sum). */
static ksa_tensor *norm_split(ksa_model *m, step_ctx *s, ksa_tensor *x, long w_text, long w_sum,
                              double eps_sum, int two_streams)
{
    ksa_real eps = (ksa_real)m->config.rms_norm_eps;
    if (!two_streams || w_sum < 0)
        return ksa_op_rmsnorm(s->tp, x, P(m, w_text), eps);
    ksa_tensor *y = ksa_tensor_like(s->a, x); /* each stream writes its own rows */
    ksa_op_rmsnorm_into(s->tp, rows_of(s, x, 0), P(m, w_text), eps, rows_of(s, y, 0));
    ksa_op_rmsnorm_into(s->tp, rows_of(s, x, 1), P(m, w_sum), (ksa_real)eps_sum, rows_of(s, y, 1));
    return y;
}

static ksa_tensor *linear_split(ksa_model *m, step_ctx *s, ksa_tensor *x, long w_text, long w_sum,
                                int two_streams)
{
    if (!two_streams || w_sum < 0)
        return ksa_op_linear(s->tp, x, P(m, w_text));
    ksa_tensor *y = ksa_tensor_2d(s->a, ksa_rows(x), P(m, w_text)->shape[0]);
    ksa_op_linear_into(s->tp, rows_of(s, x, 0), P(m, w_text), rows_of(s, y, 0));
    ksa_op_linear_into(s->tp, rows_of(s, x, 1), P(m, w_sum), rows_of(s, y, 1));
    return y;
}

static ksa_tensor *mlp_block(ksa_model *m, step_ctx *s, const ksa_layer_params *lp, ksa_tensor *h)
{
    ksa_tensor *x = ksa_op_rmsnorm(s->tp, h, P(m, lp->post_attention_layernorm),
                                   (ksa_real)m->config.rms_norm_eps);
    ksa_tensor *a = ksa_op_swiglu(s->tp, ksa_op_linear(s->tp, x, P(m, lp->gate_proj)),
                                  ksa_op_linear(s->tp, x, P(m, lp->up_proj)));
    return ksa_op_add(s->tp, h, ksa_op_linear(s->tp, a, P(m, lp->down_proj)));
}

/* The coefficient the summary rows of a summary layer use: 1 (own q/k/v alone: no base
 * path at all) unless the model anneals (KSA_SPEC §5.5). */
static double mix_of(const ksa_model *m, const ksa_layer_params *lp, int two_streams)
{
    if (!two_streams || !m->layout.mix_qkv || lp->q_proj_summary < 0)
        return 1;
    KSA_ASSERT(m->summary_mix >= 0 && m->summary_mix <= 1, "summary_mix %g outside [0, 1]",
               m->summary_mix);
    return m->summary_mix;
}

/* The q, k or v of every row in a summary layer that anneals, 0 < mix < 1 (KSA_SPEC §5.5):
 *   text rows      [0, Nt)   : norm(x̂ · wᵀ)
 *   summary rows   [Nt, N)   : mix·norm_s(x̂ · w_sumᵀ) + (1-mix)·norm(x̂ · wᵀ)
 * norm: the head norm nw (none for v: nw < 0), norm_s: nw_sum, or nw when nw_sum < 0 (the
 * summary's own head norms use KSA_SUMMARY_QK_NORM_EPS, the shared ones rms_norm_eps).
 * x: [N, D]; returns [N, out]. Both summary paths record their own ops, so the gradient
 * reaches w_sum (times mix) and w (times 1 - mix) and the summary rows of x through both.  */
static ksa_tensor *project_mixed(ksa_model *m, step_ctx *s, ksa_tensor *x, long w, long w_sum,
                                 long nw, long nw_sum, double mix)
{
    ksa_tape *tp = s->tp;
    ksa_real eps = (ksa_real)m->config.rms_norm_eps;
    ksa_tensor *y = ksa_tensor_2d(s->a, ksa_rows(x), P(m, w)->shape[0]);
    ksa_tensor *xt = rows_of(s, x, 0), *xs = rows_of(s, x, 1);
    ksa_tensor *own = ksa_op_linear(tp, xs, P(m, w_sum)); /* [Ns, out] */
    ksa_tensor *base = ksa_op_linear(tp, xs, P(m, w));    /* [Ns, out] */
    if (nw < 0) {
        ksa_op_linear_into(tp, xt, P(m, w), rows_of(s, y, 0));
    } else {
        ksa_op_rmsnorm_into(tp, ksa_op_linear(tp, xt, P(m, w)), P(m, nw), eps, rows_of(s, y, 0));
        own = nw_sum >= 0 ? ksa_op_rmsnorm(tp, own, P(m, nw_sum), (ksa_real)KSA_SUMMARY_QK_NORM_EPS)
                          : ksa_op_rmsnorm(tp, own, P(m, nw), eps);
        base = ksa_op_rmsnorm(tp, base, P(m, nw), eps);
    }
    ksa_op_lerp_into(tp, own, base, (ksa_real)mix, rows_of(s, y, 1));
    return y;
}

/* Pre-norm attention block. two_streams: h holds text and summary rows and the layer is a
 * summary layer with window W; otherwise h holds text rows only (causal attention). */
static ksa_tensor *attention_block(ksa_model *m, step_ctx *s, const ksa_layer_params *lp,
                                   ksa_tensor *h, int two_streams, size_t W)
{
    ksa_tape *tp = s->tp;
    /* input_layernorm_summary uses rms_norm_eps like every other norm (KSA_SPEC.md 6.1) */
    ksa_tensor *x = norm_split(m, s, h, lp->input_layernorm, lp->input_layernorm_summary,
                               m->config.rms_norm_eps, two_streams);
    ksa_tensor *q, *k, *v;
    double mix = mix_of(m, lp, two_streams);
    if (mix > 0 && mix < 1 && s->Ns) {
        q = project_mixed(m, s, x, lp->q_proj, lp->q_proj_summary, lp->q_norm, lp->q_norm_summary,
                          mix);
        k = project_mixed(m, s, x, lp->k_proj, lp->k_proj_summary, lp->k_norm, lp->k_norm_summary,
                          mix);
        v = project_mixed(m, s, x, lp->v_proj, lp->v_proj_summary, -1, -1, mix);
    } else {
        /* mix = 0: the summary rows use the shared projections and head norms alone (exactly
         * a model without summary q/k/v); their own weights get no gradient */
        int own = mix > 0;
        q = linear_split(m, s, x, lp->q_proj, own ? lp->q_proj_summary : -1, two_streams);
        k = linear_split(m, s, x, lp->k_proj, own ? lp->k_proj_summary : -1, two_streams);
        v = linear_split(m, s, x, lp->v_proj, own ? lp->v_proj_summary : -1, two_streams);
        q = norm_split(m, s, q, lp->q_norm, own ? lp->q_norm_summary : -1, KSA_SUMMARY_QK_NORM_EPS,
                       two_streams);
        k = norm_split(m, s, k, lp->k_norm, own ? lp->k_norm_summary : -1, KSA_SUMMARY_QK_NORM_EPS,
                       two_streams);
    }
    /* in place: q and k (norm or projection outputs) have no other reader */
    q = ksa_op_rope_table_in_place(tp, q, s->rope, m->Hq);
    k = ksa_op_rope_table_in_place(tp, k, s->rope, m->Hkv);
    ksa_tensor *o;
    if (two_streams) {
        ksa_summary_attn_dims d = {.nseq = s->nseq,
                                   .T = s->T,
                                   .C = m->layout.C,
                                   .S = m->layout.S,
                                   .W = W,
                                   .Hq = m->Hq,
                                   .Hkv = m->Hkv,
                                   .dh = m->dh,
                                   .t0 = s->t0};
        o = ksa_cp_summary_attention(tp, s->cp, q, k, v, &d);
    } else if (m->layout.sliding_window && !s->teacher) { /* SWA: query t sees t-N ... t */
        ksa_summary_attn_dims d = {.nseq = s->nseq,
                                   .T = s->T,
                                   .C = 1,
                                   .S = 0,
                                   .W = m->layout.sliding_window,
                                   .Hq = m->Hq,
                                   .Hkv = m->Hkv,
                                   .dh = m->dh,
                                   .t0 = s->t0};
        o = ksa_cp_summary_attention(tp, s->cp, q, k, v, &d);
    } else {
        o = ksa_cp_causal_attention(tp, s->cp, q, k, v, s->nseq, m->Hq, m->Hkv, m->dh);
    }
    ksa_tensor *proj = ksa_op_linear(tp, o, P(m, lp->o_proj));
    if (s->capture && m->layout.ksa && m->layout.is_summary[s->layer])
        s->capture[s->layer] = two_streams ? rows_of(s, proj, 0) : proj;
    return ksa_op_add(tp, h, proj);
}

/* Decoder layer i: h [N, D] (text rows, then summary rows) -> the next h [N, D]. */
static ksa_tensor *layer_forward(ksa_model *m, step_ctx *s, size_t i, ksa_tensor *h)
{
    const ksa_model_layout *l = &m->layout;
    const ksa_layer_params *lp = &m->layers[i];
    s->layer = i;
    if (s->teacher) /* distillation's teacher: plain causal attention over the text */
        return mlp_block(m, s, lp, attention_block(m, s, lp, h, 0, 0));
    if (l->ksa && l->is_summary[i])
        return mlp_block(m, s, lp, attention_block(m, s, lp, h, 1, l->window[i]));
    if (!s->Ns)
        return mlp_block(m, s, lp, attention_block(m, s, lp, h, 0, 0));
    /* bypass layer: text rows only, summary rows pass through */
    ksa_tensor *ht = rows_of(s, h, 0), *hs = rows_of(s, h, 1);
    ht = mlp_block(m, s, lp, attention_block(m, s, lp, ht, 0, 0));
    return ksa_op_concat_rows(s->tp, ht, hs);
}

/* ---- activation recomputation --------------------------------------------------------
 * With m->recompute a layer is one tape node, "layer": its forward runs layer_forward
 * without recording, copies the output out of the layer's scratch and gives the scratch
 * back to the arena, so the step keeps only the layers' inputs and outputs. Its backward
 * re-runs layer_forward on a nested tape from the saved input (the same kernels on the same
 * values: bit-identical activations), seeds the output with the outer gradient, replays
 * the nested tape (parameter gradients land in the flat buffer as without recomputation)
 * and adds the input's gradient into the outer one. Peak memory: the saved L x D rows per
 * layer plus one layer's activations and live gradients.                               */
#define LAYER_TAPE_NODES 40 /* nodes one layer records at most (ksa_model_tape_nodes) */

typedef struct {
    ksa_model *m;
    step_ctx s; /* the step's sizes and positions (tp replaced by the nested tape) */
    size_t layer;
} recompute_ctx;

static void layer_backward(ksa_tape *tp, const ksa_node *nd)
{
    const recompute_ctx *c = nd->ctx;
    ksa_tensor *h_saved = nd->in[0];
    ksa_real *dh = ksa_tape_grad(tp, h_saved); /* before the mark: it outlives the scratch */
    ksa_real *dy = ksa_tensor_grad_if_any(nd->out);
    size_t mark = ksa_arena_mark(tp->arena);
    ksa_tape sub;
    ksa_tape_init_nested(&sub, tp, LAYER_TAPE_NODES);
    step_ctx s = c->s;
    s.tp = &sub;
    ksa_tensor *h = ksa_tensor_alias(tp->arena, h_saved); /* a leaf: its gradient stays */
    h->requires_grad = 1;
    ksa_tensor *y = layer_forward(c->m, &s, c->layer, h);
    ksa_tape_seed_borrowed(&sub, y, dy);
    ksa_tape_replay(&sub);
    if (h->grad && !tp->plan_only) {
        size_t n = h->numel;
        const ksa_real *g = h->grad;
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < n; j++)
            dh[j] += g[j];
    }
    ksa_tape_drop_grad(tp, h);
    ksa_arena_release(tp->arena, mark);
}

static ksa_tensor *layer_recomputed(ksa_model *m, step_ctx *s, size_t i, ksa_tensor *h)
{
    ksa_tape *tp = s->tp;
    ksa_tensor *out = ksa_tensor_like(s->a, h);
    size_t mark = ksa_arena_mark(s->a);
    int recording = tp->recording;
    tp->recording = 0;
    ksa_tensor *y = layer_forward(m, s, i, h);
    tp->recording = recording;
    size_t n = tp->plan_only ? 0 : out->numel;
    const ksa_real *src = y->data;
    ksa_real *dst = out->data;
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < n; j++)
        dst[j] = src[j];
    ksa_arena_release(s->a, mark);
    ksa_node *nd = ksa_tape_record(tp, layer_backward, "layer", out, 1, &h, sizeof(recompute_ctx));
    if (nd) {
        recompute_ctx *c = nd->ctx;
        c->m = m;
        c->s = *s;
        c->layer = i;
    }
    return out;
}

/* The forward of ksa_model_forward, with the per-target losses into target_loss when it is
 * not NULL. */
static ksa_tensor *forward(ksa_model *m, ksa_tape *tp, const int32_t *tokens, size_t nseq, size_t T,
                           double norm, double *loss_value, ksa_tensor **logits_out,
                           double *target_loss, double ce_weight, ksa_tensor **capture)
{
    const ksa_model_layout *l = &m->layout;
    KSA_ASSERT(nseq >= 1 && T >= 1, "empty batch: %zu rows of %zu tokens", nseq, T);
    step_ctx s = {.tp = tp, .a = tp->arena, .nseq = nseq, .T = T, .capture = capture};
    if (m->cp && m->cp->P > 1) {
        KSA_ASSERT(T == ksa_cp_block_len(m->cp),
                   "context parallelism: %zu tokens given for a block of %zu", T,
                   ksa_cp_block_len(m->cp));
        s.cp = m->cp;
        s.t0 = ksa_cp_block_start(m->cp);
    }
    s.NS = ksa_layout_summary_rows(l, T);
    s.Nt = nseq * T;
    s.Ns = nseq * s.NS;
    size_t N = s.Nt + s.Ns;

    /* inputs and targets of the text stream; ids of the summary stream */
    int32_t *ids = ksa_arena_alloc(s.a, (N ? N : 1) * sizeof *ids);
    int32_t *targets = ksa_arena_alloc(s.a, s.Nt * sizeof *targets);
    for (size_t q = 0; q < nseq; q++)
        for (size_t t = 0; t < T; t++) {
            ids[q * T + t] = tokens[q * (T + 1) + t];
            targets[q * T + t] = tokens[q * (T + 1) + t + 1];
        }
    int32_t *pos = ksa_arena_alloc(s.a, (N ? N : 1) * sizeof *pos);
    ksa_layout_block_positions(pos, l, nseq, s.t0, T);
    s.pos = pos;
    s.rope = tp->plan_only ? ksa_rope_table_reserve(s.a, N, m->dh, m->config.rope_theta)
                           : ksa_rope_table_new(s.a, pos, N, m->dh, m->config.rope_theta);

    ksa_tensor *h = ksa_op_embedding(tp, P(m, m->embed_tokens), ids, s.Nt);
    if (s.Ns) { /* s_c.j: row j of summary_embedding, or token summary_token_begin + j */
        int32_t *sum_ids = ids + s.Nt;
        int32_t base = l->independent_embedding ? 0 : (int32_t)m->config.summary_token_begin;
        for (size_t r = 0; r < s.Ns; r++)
            sum_ids[r] = base + (int32_t)(r % l->S);
        long table = l->independent_embedding ? m->summary_embedding : m->embed_tokens;
        h = ksa_op_concat_rows(tp, h, ksa_op_embedding(tp, P(m, table), sum_ids, s.Ns));
    }

    for (size_t i = 0; i < l->n_layers; i++)
        h = m->recompute ? layer_recomputed(m, &s, i, h) : layer_forward(m, &s, i, h);

    ksa_tensor *y =
        ksa_op_rmsnorm(tp, rows_of(&s, h, 0), P(m, m->norm), (ksa_real)m->config.rms_norm_eps);
    ksa_tensor *logits = ksa_op_linear(tp, y, P(m, m->lm_head >= 0 ? m->lm_head : m->embed_tokens));
    if (logits_out)
        *logits_out = logits;
    if (ce_weight > 0) /* *loss_value is then ce_weight x the mean */
        return ksa_op_cross_entropy(tp, logits, targets, NULL, norm / ce_weight, loss_value,
                                    target_loss);
    int recording = tp->recording; /* weight 0: the value only, no gradient */
    tp->recording = 0;
    ksa_tensor *ce = ksa_op_cross_entropy(tp, logits, targets, NULL, norm, loss_value, target_loss);
    tp->recording = recording;
    return ce;
}

ksa_tensor *ksa_model_forward(ksa_model *m, ksa_tape *tp, const int32_t *tokens, size_t nseq,
                              size_t T, double norm, double *loss_value, ksa_tensor **logits_out)
{
    return forward(m, tp, tokens, nseq, T, norm, loss_value, logits_out, NULL, 1, NULL);
}

ksa_tensor *ksa_model_forward_per_target(ksa_model *m, ksa_tape *tp, const int32_t *tokens,
                                         size_t nseq, size_t T, double norm, double *loss_value,
                                         double *target_loss)
{
    return forward(m, tp, tokens, nseq, T, norm, loss_value, NULL, target_loss, 1, NULL);
}

/* ---- attention distillation (KSA_SPEC §9.2) -------------------------------------------
 * The teacher is the same weights run as a plain causal model on the text alone: every layer
 * causal attention, no summary rows, positions t0 + t. It runs without recording, one layer
 * at a time in arena scratch given back after each layer (its forward costs no backward
 * memory: only the next layer's input, the captured attention outputs and the logits stay). */
static void teacher_forward(ksa_model *m, ksa_tape *tp, const int32_t *tokens, size_t nseq,
                            size_t T, ksa_tensor *logits_out, ksa_tensor **attn_out)
{
    int recording = tp->recording;
    tp->recording = 0;
    ksa_arena *a = tp->arena;
    step_ctx s = {.tp = tp, .a = a, .nseq = nseq, .T = T, .teacher = 1};
    if (m->cp && m->cp->P > 1)
        s.cp = m->cp, s.t0 = ksa_cp_block_start(m->cp);
    s.Nt = nseq * T;
    size_t mark0 = ksa_arena_mark(a), Nt = s.Nt, D = m->D;
    ksa_tensor *hbuf[2] = {ksa_tensor_2d(a, Nt, D), ksa_tensor_2d(a, Nt, D)};
    int32_t *ids = ksa_arena_alloc(a, Nt * sizeof *ids),
            *pos = ksa_arena_alloc(a, Nt * sizeof *pos);
    for (size_t q = 0; q < nseq; q++)
        for (size_t t = 0; t < T; t++) {
            ids[q * T + t] = tokens[q * (T + 1) + t];
            pos[q * T + t] = (int32_t)(s.t0 + t);
        }
    s.pos = pos;
    s.rope = tp->plan_only ? ksa_rope_table_reserve(a, Nt, m->dh, m->config.rope_theta)
                           : ksa_rope_table_new(a, pos, Nt, m->dh, m->config.rope_theta);
    int live = !tp->plan_only;
    size_t bytes = Nt * D * sizeof(ksa_real), mark = ksa_arena_mark(a);
    ksa_tensor *h = ksa_op_embedding(tp, P(m, m->embed_tokens), ids, Nt);
    if (live)
        memcpy(hbuf[0]->data, h->data, bytes);
    ksa_arena_release(a, mark);
    ksa_tensor *cap[KSA_MAX_LAYERS] = {0};
    s.capture = cap;
    for (size_t i = 0; i < m->layout.n_layers; i++) {
        mark = ksa_arena_mark(a);
        ksa_tensor *y = layer_forward(m, &s, i, hbuf[i % 2]);
        if (live)
            memcpy(hbuf[(i + 1) % 2]->data, y->data, bytes);
        if (cap[i] && attn_out[i] && live)
            memcpy(attn_out[i]->data, cap[i]->data, bytes);
        ksa_arena_release(a, mark);
    }
    mark = ksa_arena_mark(a);
    ksa_tensor *y = ksa_op_rmsnorm(tp, hbuf[m->layout.n_layers % 2], P(m, m->norm),
                                   (ksa_real)m->config.rms_norm_eps);
    ksa_tensor *logits = ksa_op_linear(tp, y, P(m, m->lm_head >= 0 ? m->lm_head : m->embed_tokens));
    if (live)
        memcpy(logits_out->data, logits->data, Nt * m->V * sizeof(ksa_real));
    ksa_arena_release(a, mark0);
    tp->recording = recording;
}

void ksa_model_teacher_logits(ksa_model *m, ksa_tape *tp, const int32_t *tokens, size_t nseq,
                              size_t T, ksa_tensor *logits)
{
    ksa_tensor *none[KSA_MAX_LAYERS] = {0};
    teacher_forward(m, tp, tokens, nseq, T, logits, none);
}

ksa_distill ksa_distill_defaults(void)
{
    ksa_distill d = {
        .lm_weight = 1, .attn_weight = 5, .kl_weight = 5, .cos_weight = 0, .clamp = 0.1};
    return d;
}

ksa_tensor *ksa_model_forward_distill(ksa_model *m, ksa_tape *tp, const int32_t *tokens,
                                      size_t nseq, size_t T, double norm, ksa_distill *d)
{
    KSA_ASSERT(!m->recompute, "attention distillation does not run with recomputation");
    const ksa_model_layout *l = &m->layout;
    size_t Nt = nseq * T, n_summary = 0;
    ksa_arena *a = tp->arena;
    /* the teacher's attention outputs of the summary layers and its logits */
    ksa_tensor *t_attn[KSA_MAX_LAYERS] = {0};
    for (size_t i = 0; i < l->n_layers; i++)
        if (l->ksa && l->is_summary[i])
            t_attn[i] = ksa_tensor_2d(a, Nt, m->D), n_summary++;
    KSA_ASSERT(n_summary > 0, "attention distillation needs summary layers");
    ksa_tensor *t_logits = ksa_tensor_2d(a, Nt, m->V);
    teacher_forward(m, tp, tokens, nseq, T, t_logits, t_attn);
    /* the student: the KSA forward, its summary layers' attention outputs captured */
    ksa_tensor *cap[KSA_MAX_LAYERS] = {0}, *logits;
    double ce_scaled = 0;
    ksa_tensor *total =
        forward(m, tp, tokens, nseq, T, norm, &ce_scaled, &logits, NULL, d->lm_weight, cap);
    d->ce = d->lm_weight > 0 ? ce_scaled / d->lm_weight : ce_scaled;
    if (d->lm_weight <= 0)
        total = NULL;
    d->attn = 0;
    for (size_t i = 0; i < l->n_layers; i++) {
        if (!t_attn[i])
            continue;
        double v;
        ksa_tensor *term =
            ksa_op_clamped_mse(tp, cap[i], t_attn[i], d->clamp, d->rms_norm,
                               d->attn_weight / (double)n_summary, norm * (double)m->D, &v);
        d->attn += v / (double)n_summary;
        total = total ? ksa_op_add(tp, total, term) : term;
    }
    ksa_tensor *kl = ksa_op_kl_teacher(tp, logits, t_logits, d->kl_weight, norm, &d->kl);
    total = ksa_op_add(tp, total, kl);
    d->cos = 0;
    if (d->cos_weight > 0)
        for (size_t i = 0; i < l->n_layers; i++) {
            if (!t_attn[i])
                continue;
            double v;
            ksa_tensor *term = ksa_op_cosine_distance(tp, cap[i], t_attn[i],
                                                      d->cos_weight / (double)n_summary, norm, &v);
            d->cos += v / (double)n_summary;
            total = ksa_op_add(tp, total, term);
        }
    return total;
}

/* ---- sizing --------------------------------------------------------------------------- */
size_t ksa_model_tape_nodes(const ksa_model *m)
{
    /* per layer at most (LAYER_TAPE_NODES): 2 norms + 2 concats, 6 linears + 3 concats,
     * 4 norms + 2 concats, 2 ropes, attention, o_proj, add, mlp (norm, 3 linears, swiglu,
     * add), 1 concat; annealing (project_mixed) 9 linears, 6 norms and 3 blends instead of
     * the 6 linears and 4 norms; with recomputation one node per layer and one nested tape
     * at a time */
    return 8 + m->layout.n_layers * LAYER_TAPE_NODES;
}

/* Reals of the activations of one forward of nseq x T (their gradients take as many). */
/* In floating point: exact for any step that can be planned, and free of overflow for the
 * sizes ksa_model_step_bytes_estimate must refuse. */
static double activation_reals(const ksa_model *m, size_t nseq, size_t T)
{
    const ksa_model_layout *l = &m->layout;
    double N = (double)nseq * (double)(T + ksa_layout_summary_rows(l, T));
    double Nt = (double)nseq * (double)T;
    double D = (double)m->D, I = (double)m->I, V = (double)m->V, Hq = (double)m->Hq;
    double qd = (double)(m->Hq * m->dh), kvd = (double)(m->Hkv * m->dh);
    double layers = (double)l->n_layers;
    /* Per layer, the activations: norm out, q, k, v (projection, q/k norm; the two streams
     * write their own rows of one buffer, RoPE works in place), attention out + lse,
     * o_proj, residual, post norm, gate, up, swiglu, down, residual. */
    double per_layer = N * (2 * D)                    /* input norm, residual */
                       + N * 2 * (qd + 2 * kvd)       /* q,k,v: linear, norm */
                       + N * (qd + Hq)                /* attention output, lse */
                       + N * (2 * D)                  /* o_proj, residual */
                       + N * (D + 3 * I + D)          /* post norm, gate, up, swiglu, down */
                       + N * (2 * D)                  /* bypass split/concat copies */
                       + 2 * N;                       /* norm statistics */
    double outside = 4 * N * D + 2 * Nt * V + Nt * D; /* embeddings, head, loss */
    /* Annealing (summary_mix_qkv, 0 < m < 1; sized for any m): a summary layer projects its
     * summary rows twice, each into its own [Ns, out] linear and head-norm outputs (and their
     * statistics) before the blend writes the rows of q, k and v: at most this on top. */
    double mix = 0, mixing_layers = 0;
    if (l->ksa && l->mix_qkv) {
        double Ns = (double)nseq * (double)ksa_layout_summary_rows(l, T);
        mix = Ns * 4 * (qd + 2 * kvd) + Ns * 2 * (Hq + (double)m->Hkv);
        for (size_t i = 0; i < l->n_layers; i++)
            mixing_layers += l->is_summary[i];
    }
    if (m->recompute) /* each layer's output kept, one layer's activations at a time */
        return layers * N * D + per_layer + mix + outside;
    return layers * per_layer + mixing_layers * mix + outside;
}

size_t ksa_model_grad_bytes(const ksa_model *m, size_t nseq, size_t T)
{
    /* + each gradient's block rounded up to 64 bytes */
    return (size_t)activation_reals(m, nseq, T) * sizeof(ksa_real) + ksa_model_tape_nodes(m) * 64;
}

/* Context parallelism's arena on top of a block's own (dist/cp_attn.c), an upper bound:
 * every summary layer keeps its foreign keys and values (text halo and summary rows) from the
 * forward to the backward; one call at a time adds their gradients, the exchange's send and
 * receive buffers (a block sends at most its rows to each other block) and the workspace of
 * a call over those keys; the ring adds four blocks' keys and values of the largest block,
 * a partial output and its workspace.                                                  */
static size_t cp_arena_bytes(const ksa_model *m, size_t nseq, size_t T)
{
    const ksa_cp *cp = m->cp;
    if (!cp || cp->P == 1)
        return 0;
    const ksa_model_layout *l = &m->layout;
    size_t kw = m->Hkv * m->dh, R = sizeof(ksa_real), P = (size_t)cp->P, most = 0, kept = 0;
    size_t kept_one = 0; /* the largest layer's */
    for (int b = 0; b < cp->P; b++)
        most = cp->start[b + 1] - cp->start[b] > most ? cp->start[b + 1] - cp->start[b] : most;
    size_t NS = ksa_layout_summary_rows(l, T), worst = 0;
    int nt = ksa_threads_get();
    for (size_t i = 0; i < l->n_layers; i++) {
        int summary = l->ksa && l->is_summary[i];
        if (!summary && !l->sliding_window) { /* the ring */
            ksa_summary_attn_dims d = {.nseq = nseq,
                                       .T = T,
                                       .C = 1,
                                       .W = SIZE_MAX,
                                       .Hq = m->Hq,
                                       .Hkv = m->Hkv,
                                       .dh = m->dh,
                                       .TK = most};
            size_t w = ksa_summary_attn_backward_workspace_size(&d, nt);
            size_t f = ksa_summary_attn_forward_workspace_size(&d, nt);
            size_t own = ksa_summary_attn_backward_workspace_size(&d, nt);
            size_t b = 8 * nseq * most * kw * R + nseq * T * m->Hq * (m->dh + 1) * R;
            b += (w > f ? w : f) + own + 4 * 4096;
            worst = b > worst ? b : worst;
            continue;
        }
        size_t C = summary ? l->C : 1, S = summary ? l->S : 0;
        size_t W = summary ? l->window[i] : l->sliding_window, h0, ns;
        ksa_cp_summary_needs(cp, cp->rank, C, S, W, &h0, &ns);
        size_t foreign = nseq * (ksa_cp_block_start(cp) - h0 + ns) * 2 * kw * R;
        kept += foreign + 4 * 4096;
        kept_one = foreign + 4 * 4096 > kept_one ? foreign + 4 * 4096 : kept_one;
        ksa_summary_attn_dims d = {.nseq = nseq,
                                   .T = T,
                                   .C = C,
                                   .S = S,
                                   .W = W,
                                   .Hq = m->Hq,
                                   .Hkv = m->Hkv,
                                   .dh = m->dh,
                                   .t0 = ksa_cp_block_start(cp),
                                   .kt0 = h0,
                                   .TK = ksa_cp_block_start(cp) - h0 + 1,
                                   .NSK = ns};
        size_t w = ksa_summary_attn_backward_workspace_size(&d, nt);
        size_t f = ksa_summary_attn_forward_workspace_size(&d, nt);
        size_t sent = P * nseq * (T + NS) * 2 * kw * R;
        size_t b = foreign + sent + foreign + (w > f ? w : f) + nseq * T * m->Hq * (m->dh + 1) * R +
                   4 * P * sizeof(int) + 8 * 4096;
        worst = b > worst ? b : worst;
    }
    /* with recomputation a layer's foreign keys live only while it is re-run */
    return (m->recompute ? kept_one : kept) + worst;
}

size_t ksa_model_arena_bytes(const ksa_model *m, size_t nseq, size_t T)
{
    const ksa_model_layout *l = &m->layout;
    size_t N = nseq * (T + ksa_layout_summary_rows(l, T));
    size_t Nt = nseq * T;
    size_t bytes = 2 * (size_t)activation_reals(m, nseq, T) * sizeof(ksa_real) + (64 << 10);
    /* attention workspaces (the larger of forward and backward, per layer) */
    ksa_summary_attn_dims d = {.nseq = nseq,
                               .T = T,
                               .C = l->ksa ? l->C : 1,
                               .S = l->ksa ? l->S : 0,
                               .W = 0,
                               .Hq = m->Hq,
                               .Hkv = m->Hkv,
                               .dh = m->dh};
    int nt = ksa_threads_get();
    size_t ws = ksa_summary_attn_backward_workspace_size(&d, nt);
    size_t wf = ksa_summary_attn_forward_workspace_size(&d, nt);
    size_t wc = ksa_causal_attn_backward_workspace_size(T, m->dh, nt);
    size_t wcf = ksa_causal_attn_forward_workspace_size(T, m->dh, nt);
    size_t w = ws > wf ? ws : wf;
    if (l->sliding_window) { /* causal layers with a window run the summary kernel, C 1, S 0 */
        ksa_summary_attn_dims sw = d;
        sw.C = 1, sw.S = 0;
        size_t b = ksa_summary_attn_backward_workspace_size(&sw, nt);
        size_t f = ksa_summary_attn_forward_workspace_size(&sw, nt);
        w = w > b ? w : b;
        w = w > f ? w : f;
    }
    w = w > wc ? w : wc;
    w = w > wcf ? w : wcf;
    bytes += ((m->recompute ? 1 : l->n_layers) + 1) * (w + 4096);
    /* ids, targets, positions, RoPE's cos/sin table, per-tensor structs and alignment slack */
    bytes += N * m->dh * sizeof(ksa_real) + 4 * N * sizeof(int32_t) + Nt * 2 * sizeof(double) +
             m->layout.n_layers * 64 * 512 + (1 << 20);
    /* distillation: the teacher's logits and summary layers' attention outputs, kept for the
     * step, its two hidden-state buffers, ids, positions and RoPE table (its layers' scratch
     * is a layer's activations, given back before the student runs), and the loss terms'
     * per-row sums */
    if (m->distill)
        bytes += (Nt * m->V + (l->n_layers + 2) * Nt * m->D + Nt * m->dh) * sizeof(ksa_real) +
                 2 * Nt * sizeof(int32_t) + 4 * Nt * sizeof(double) + 8 * 4096;
    return bytes + cp_arena_bytes(m, nseq, T);
}

void ksa_model_tape_init(const ksa_model *m, size_t nseq, size_t T, int grads, ksa_arena *arena,
                         ksa_grad_pool *pool, ksa_tape *tp)
{
    size_t grad_bytes = ksa_model_grad_bytes(m, nseq, T);
    ksa_arena_init(arena, ksa_model_arena_bytes(m, nseq, T) - grad_bytes);
    ksa_grad_pool_init(pool, grads ? grad_bytes : 0);
    ksa_tape_init(tp, arena, ksa_model_tape_nodes(m));
    ksa_tape_use_grad_pool(tp, pool);
}

double ksa_model_step_bytes_estimate(const ksa_model *m, size_t nseq, size_t T)
{
    return 2 * activation_reals(m, nseq, T) * sizeof(ksa_real) + (double)(64 << 20);
}

ksa_step_memory ksa_model_plan(const ksa_model *m, size_t nseq, size_t T, int grads)
{
    ksa_model pm = *m; /* a shallow copy: the same tables, maybe other parameter buffers */
    int declared = !m->params.data;
    if (declared)
        ksa_params_alloc_sparse(&pm.params);
    size_t grad_bytes = ksa_model_grad_bytes(m, nseq, T);
    ksa_arena arena;
    ksa_grad_pool pool;
    ksa_tape tp;
    ksa_arena_init_sparse(&arena, ksa_model_arena_bytes(m, nseq, T) - grad_bytes);
    ksa_grad_pool_init_sparse(&pool, grads ? grad_bytes : 0);
    ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(m));
    ksa_tape_use_grad_pool(&tp, &pool);
    tp.plan_only = 1;
    tp.recording = grads;
    int32_t *tokens = ksa_alloc_zero(nseq * (T + 1) * sizeof *tokens); /* token 0: any id */
    double loss;
    ksa_tensor *l;
    if (m->distill) { /* the teacher's outputs and the loss terms too */
        ksa_distill d = ksa_distill_defaults();
        l = ksa_model_forward_distill(&pm, &tp, tokens, nseq, T, 1.0, &d);
    } else {
        l = forward(&pm, &tp, tokens, nseq, T, 1.0, &loss, NULL, NULL, 1, NULL);
    }
    if (grads)
        ksa_tape_backward(&tp, l);
    ksa_step_memory r = {
        .arena_peak = arena.peak, .grads_high_water = pool.high_water, .grads_peak = pool.peak};
    ksa_free(tokens);
    ksa_model_tape_free(&arena, &pool, &tp);
    if (declared)
        ksa_params_free_sparse(&pm.params);
    return r;
}

void ksa_model_tape_free(ksa_arena *arena, ksa_grad_pool *pool, ksa_tape *tp)
{
    ksa_tape_free(tp);
    ksa_arena_free(arena);
    ksa_grad_pool_free_all(pool);
}
