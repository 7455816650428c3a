/* gradcheck.c - whole-model central finite differences against the tape's backward. */
#include "gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

int32_t *ksa_gradcheck_setup(ksa_model *m, uint64_t seed, size_t nseq, size_t T)
{
    ksa_model_init_weights(m, seed);
    ksa_rng r = ksa_rng_at(seed * 0x9E3779B97F4A7C15ull + 1);
    for (size_t i = 0; i < m->params.n; i++) {
        const ksa_param *e = &m->params.table[i];
        if (e->ndim == 1)
            for (size_t j = 0; j < e->numel; j++)
                m->params.data[e->offset + j] += (ksa_real)(0.3 * (ksa_rng_uniform(&r) - 0.5));
    }
    int32_t *tokens = ksa_alloc(nseq * (T + 1) * sizeof *tokens);
    for (size_t i = 0; i < nseq * (T + 1); i++)
        tokens[i] = (int32_t)(ksa_rng_next(&r) % (uint64_t)m->V);
    return tokens;
}

typedef struct {
    ksa_model *m;
    ksa_tape *tp;
    const int32_t *tokens;
    size_t nseq, T;
} loss_ctx;

static double loss_no_grad(loss_ctx *c)
{
    ksa_tape_reset(c->tp);
    c->tp->recording = 0;
    double value = 0;
    ksa_model_forward(c->m, c->tp, c->tokens, c->nseq, c->T, (double)(c->nseq * c->T), &value,
                      NULL);
    c->tp->recording = 1;
    return value;
}

/* How many elements of e are checked: all, or the sample. */
static size_t elements_to_check(const ksa_param *e, const ksa_gradcheck_options *opt)
{
    return opt && opt->sample > 0 && opt->sample < e->numel ? opt->sample : e->numel;
}

static int compare_sizes(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* The elements of parameter e to perturb: idx[0..n), ascending (all of them, or a sample
 * drawn by a partial Fisher-Yates shuffle). Returns n; idx is ksa_alloc'ed. */
static size_t pick_elements(const ksa_param *e, const ksa_gradcheck_options *opt, size_t **idx)
{
    size_t n = elements_to_check(e, opt);
    *idx = ksa_alloc((e->numel ? e->numel : 1) * sizeof **idx);
    for (size_t j = 0; j < e->numel; j++)
        (*idx)[j] = j;
    if (n == e->numel)
        return n;
    ksa_rng r = ksa_rng_at(opt->sample_seed ^ ksa_hash_string(e->name));
    for (size_t j = 0; j < n; j++) {
        size_t k = j + (size_t)(ksa_rng_next(&r) % (uint64_t)(e->numel - j));
        size_t t = (*idx)[j];
        (*idx)[j] = (*idx)[k], (*idx)[k] = t;
    }
    qsort(*idx, n, sizeof **idx, compare_sizes);
    return n;
}

/* Progress through the elements of all checked tensors. */
typedef struct {
    FILE *out;
    double every, start, last;
    size_t done, total, n_tensors;
} progress;

static void report_progress(progress *p, size_t tensor, const char *name)
{
    double now = ksa_now();
    if (!p->out || now - p->last < p->every)
        return;
    p->last = now;
    double per_element = (now - p->start) / (double)(p->done ? p->done : 1);
    fprintf(p->out,
            "gradcheck: %zu/%zu elements, tensor %zu/%zu (%s), %.0f s elapsed, about %.0f s "
            "left\n",
            p->done, p->total, tensor + 1, p->n_tensors, name, now - p->start,
            per_element * (double)(p->total - p->done));
    fflush(p->out);
}

void ksa_gradcheck_run(ksa_model *m, const int32_t *tokens, size_t nseq, size_t T,
                       const ksa_gradcheck_options *opt, ksa_gradcheck_result *results)
{
    const int *select = opt ? opt->select : NULL;
    ksa_arena arena;
    ksa_grad_pool grads;
    ksa_tape tp;
    ksa_model_tape_init(m, nseq, T, 1, &arena, &grads, &tp);
    loss_ctx c = {m, &tp, tokens, nseq, T};

    ksa_params_zero_grad(&m->params);
    ksa_tape_reset(&tp);
    double value;
    ksa_tensor *loss = ksa_model_forward(m, &tp, tokens, nseq, T, (double)(nseq * T), &value, NULL);
    ksa_tape_backward(&tp, loss);

    progress pr = {.out = opt ? opt->progress : NULL, .every = opt ? opt->progress_every : 0};
    pr.start = pr.last = ksa_now();
    for (size_t i = 0; i < m->params.n; i++) {
        const ksa_param *e = &m->params.table[i];
        if (select && !select[i])
            continue;
        pr.total += elements_to_check(e, opt);
        pr.n_tensors++;
    }
    size_t tensor = 0;
    for (size_t i = 0; i < m->params.n; i++) {
        const ksa_param *e = &m->params.table[i];
        ksa_gradcheck_result *r = &results[i];
        memset(r, 0, sizeof *r);
        strcpy(r->name, e->name);
        r->numel = e->numel;
        if (select && !select[i])
            continue;
        r->checked = 1;
        size_t *idx;
        r->n_checked = pick_elements(e, opt, &idx);
        ksa_real *w = m->params.data + e->offset;
        const ksa_real *g = m->params.grad + e->offset;
        double max_num = 0, max_ana = 0, max_diff = 0;
        int any_nan = 0;
        for (size_t s = 0; s < r->n_checked; s++) {
            size_t j = idx[s];
            ksa_real saved = w[j];
            double h = 1e-6 * fmax(1.0, fabs((double)saved));
            w[j] = (ksa_real)((double)saved + h);
            double hp = (double)w[j] - (double)saved;
            double fp = loss_no_grad(&c);
            w[j] = (ksa_real)((double)saved - h);
            double hm = (double)saved - (double)w[j];
            double fm = loss_no_grad(&c);
            w[j] = saved;
            double num = (fp - fm) / (hp + hm);
            max_num = fmax(max_num, fabs(num));
            max_ana = fmax(max_ana, fabs((double)g[j]));
            double diff = fabs(num - (double)g[j]);
            any_nan |= isnan(diff);
            max_diff = fmax(max_diff, diff); /* fmax drops a NaN: any_nan keeps it */
            pr.done++;
            report_progress(&pr, tensor, e->name);
        }
        ksa_free(idx);
        tensor++;
        if (any_nan)
            max_diff = NAN;
        r->max_abs_numeric = max_num;
        r->max_abs_analytic = max_ana;
        r->max_abs_diff = max_diff;
    }
    ksa_model_tape_free(&arena, &grads, &tp);
}

double ksa_gradcheck_bound(const ksa_gradcheck_result *r, double atol, double rtol)
{
    return atol + rtol * r->max_abs_numeric;
}

int ksa_gradcheck_passes(const ksa_gradcheck_result *r, double atol, double rtol)
{
    return r->checked && r->max_abs_diff <= ksa_gradcheck_bound(r, atol, rtol);
}
