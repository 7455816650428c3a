/* cmd_demo.c - `ksa demo`: a small composite graph trained with AdamW on the bytes of a text
 * file, to show the autograd core end to end (the loss falls from about ln 257 = 5.55). The model
 * predicts byte t+1 from bytes t and t-1:
 *   h = E[x_t] + E_prev[x_{t-1}];  h += down(swiglu(gate(n1(h)), up(n1(h))));
 *   logits = head(n2(h));  loss = cross-entropy(logits, x_{t+1})
 * The real model and `ksa train` replace this once the KSA decoder exists.              */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/add.h"
#include "autograd/embedding.h"
#include "autograd/linear.h"
#include "autograd/params.h"
#include "autograd/rmsnorm.h"
#include "autograd/swiglu.h"
#include "autograd/xent.h"
#include "cli/commands.h"
#include "optim/adamw.h"

enum { DEMO_V = 257, DEMO_D = 64, DEMO_I = 192 };

typedef struct {
    const char *data;
    long steps, batch, threads;
    double lr;
    unsigned long long seed;
} demo_options;

static ksa_status read_file(const char *path, unsigned char **bytes, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ksa_fail(KSA_EIO, "cannot open data file '%s': %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || ftell(f) < 0) {
        fclose(f);
        return ksa_fail(KSA_EIO, "cannot seek in '%s': %s", path, strerror(errno));
    }
    size_t size = (size_t)ftell(f);
    rewind(f);
    if (size < 3) {
        fclose(f);
        return ksa_fail(KSA_EFORMAT, "data file '%s' has %zu bytes; the demo needs at least 3",
                        path, size);
    }
    *bytes = ksa_alloc(size);
    if (fread(*bytes, 1, size, f) != size) {
        fclose(f);
        ksa_free(*bytes);
        return ksa_fail(KSA_EIO, "cannot read '%s': %s", path, strerror(errno));
    }
    fclose(f);
    *n = size;
    return KSA_OK;
}

static unsigned long long next_random(unsigned long long *s)
{
    unsigned long long z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double normal(unsigned long long *s)
{
    double u1 = ((double)(next_random(s) >> 11) + 0.5) * 0x1.0p-53;
    double u2 = (double)(next_random(s) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static ksa_status parse_options(int argc, char **argv, demo_options *o)
{
    for (int i = 0; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc)
            return ksa_fail(KSA_EINVAL, "option '%s' needs a value", k);
        const char *v = argv[++i];
        char *end = NULL;
        errno = 0;
        if (!strcmp(k, "--data")) {
            o->data = v;
            continue;
        } else if (!strcmp(k, "--lr")) {
            o->lr = strtod(v, &end);
        } else if (!strcmp(k, "--seed")) {
            o->seed = strtoull(v, &end, 10);
        } else {
            long *dst = !strcmp(k, "--steps")     ? &o->steps
                        : !strcmp(k, "--batch")   ? &o->batch
                        : !strcmp(k, "--threads") ? &o->threads
                                                  : NULL;
            if (!dst)
                return ksa_fail(KSA_EINVAL,
                                "unknown option '%s' (known: --data --steps --batch --lr "
                                "--threads --seed)",
                                k);
            *dst = strtol(v, &end, 10);
            if (!errno && end && !*end && end != v && *dst < 1)
                return ksa_fail(KSA_EINVAL, "option '%s' must be at least 1, got '%s'", k, v);
        }
        if (errno || !end || *end || end == v)
            return ksa_fail(KSA_EINVAL, "option '%s': '%s' is not a number", k, v);
    }
    return KSA_OK;
}

int ksa_cmd_demo(int argc, char **argv)
{
    demo_options o = {.data = "build/data/kjv.txt", .steps = 300, .batch = 256, .threads = 0,
                      .lr = 3e-3, .seed = 1};
    unsigned char *text = NULL;
    size_t n_text = 0;
    if (parse_options(argc, argv, &o) != KSA_OK || read_file(o.data, &text, &n_text) != KSA_OK) {
        fprintf(stderr, "ksa demo: %s\n", ksa_last_error());
        return 1;
    }
    if (o.threads)
        ksa_threads_set((int)o.threads);

    ksa_params p;
    ksa_params_init(&p);
    size_t emb = ksa_params_add(&p, "embed", 2, DEMO_V, DEMO_D);
    size_t emb_prev = ksa_params_add(&p, "embed_prev", 2, DEMO_V, DEMO_D);
    size_t n1 = ksa_params_add(&p, "norm1", 1, DEMO_D, 0);
    size_t gate = ksa_params_add(&p, "gate_proj", 2, DEMO_I, DEMO_D);
    size_t up = ksa_params_add(&p, "up_proj", 2, DEMO_I, DEMO_D);
    size_t down = ksa_params_add(&p, "down_proj", 2, DEMO_D, DEMO_I);
    size_t n2 = ksa_params_add(&p, "norm2", 1, DEMO_D, 0);
    size_t head = ksa_params_add(&p, "lm_head", 2, DEMO_V, DEMO_D);
    ksa_params_alloc(&p);
    unsigned long long rng = o.seed;
    for (size_t i = 0; i < p.n; i++) {
        const ksa_param *e = &p.table[i];
        int small = i == emb || i == emb_prev || i == head; /* logits start near uniform */
        double std = e->ndim == 1 ? 0 : small ? 0.02 : 1.0 / sqrt((double)e->shape[1]);
        for (size_t j = 0; j < e->numel; j++)
            p.data[e->offset + j] = (ksa_real)(e->ndim == 1 ? 1.0 : std * normal(&rng));
    }
    ksa_real *m = ksa_alloc_zero(p.numel * sizeof *m), *v = ksa_alloc_zero(p.numel * sizeof *v);
    size_t B = (size_t)o.batch;
    int32_t *cur = ksa_alloc(B * sizeof *cur), *prev = ksa_alloc(B * sizeof *prev),
            *next = ksa_alloc(B * sizeof *next);
    ksa_arena arena;
    ksa_arena_init(&arena, (size_t)64 << 20);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 64);
    ksa_adamw_hparams hp = {.lr = o.lr, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                            .weight_decay = 0.0};

    printf("ksa demo: %zu parameters, %zu bytes of '%s', batch %zu, %ld steps, %d threads\n",
           ksa_params_count(&p), n_text, o.data, B, o.steps, ksa_threads_get());
    double first = 0, last = 0, t0 = ksa_now();
    for (long step = 1; step <= o.steps; step++) {
        for (size_t b = 0; b < B; b++) {
            size_t t = 1 + (size_t)(next_random(&rng) % (n_text - 2));
            prev[b] = text[t - 1], cur[b] = text[t], next[b] = text[t + 1];
        }
        ksa_tape_reset(&tp);
        ksa_params_zero_grad(&p);
        ksa_tensor *h = ksa_op_add(&tp, ksa_op_embedding(&tp, ksa_params_tensor(&p, emb), cur, B),
                                   ksa_op_embedding(&tp, ksa_params_tensor(&p, emb_prev), prev, B));
        ksa_tensor *hn = ksa_op_rmsnorm(&tp, h, ksa_params_tensor(&p, n1), (ksa_real)1e-6);
        ksa_tensor *a = ksa_op_swiglu(&tp, ksa_op_linear(&tp, hn, ksa_params_tensor(&p, gate)),
                                      ksa_op_linear(&tp, hn, ksa_params_tensor(&p, up)));
        h = ksa_op_add(&tp, h, ksa_op_linear(&tp, a, ksa_params_tensor(&p, down)));
        ksa_tensor *y = ksa_op_rmsnorm(&tp, h, ksa_params_tensor(&p, n2), (ksa_real)1e-6);
        ksa_tensor *logits = ksa_op_linear(&tp, y, ksa_params_tensor(&p, head));
        double loss_value;
        ksa_tensor *loss = ksa_op_cross_entropy(&tp, logits, next, NULL, (double)B, &loss_value);
        ksa_tape_backward(&tp, loss);
        ksa_adamw_update(p.data, m, v, p.grad, p.numel, &hp, step);
        if (step == 1)
            first = loss_value;
        last = loss_value;
        if (step == 1 || step % 25 == 0 || step == o.steps)
            printf("step %4ld/%ld  loss %.4f  (%.2f s)\n", step, o.steps, loss_value,
                   ksa_now() - t0);
    }
    printf("loss %.4f -> %.4f (uniform guess: ln 257 = %.4f)\n", first, last, log(257.0));
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
    ksa_free(m), ksa_free(v), ksa_free(cur), ksa_free(prev), ksa_free(next), ksa_free(text);
    ksa_params_free(&p);
    return 0;
}
