/* init_from.c - a checkpoint's parameters into a model of another configuration (init_from.h).
 *
 * Three passes, so that a refusal never touches the model:
 *   1. validate the file alone: format and /config (ksa_ckpt_read_config), then every dataset
 *      its /config declares (the file's own table, ksa_model_declare) exists, holds floats
 *      and has the declared shape (CHECKPOINT_FORMAT.md, "Writing": a reader checks every
 *      dataset's shape against /config);
 *   2. plan: compare the file's table with the model's, name by name (load / copy / draw /
 *      keep / ignore), refusing shape-fixing differences and missing parameters;
 *   3. read the planned datasets into the model's slices (H5Dread converts float32 to
 *      ksa_real), then make the copies and draws, then write the report.
 * HDF5's automatic error printing is off; failures name the file and the dataset, with the
 * innermost message of HDF5's error stack.                                                  */
#include "init_from.h"
#include "h5util.h"
#include "verify.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "ckpt/ckpt.h"
#include "core/rng.h"

#ifdef KSA_REAL_DOUBLE
#define REAL_MEM_TYPE H5T_NATIVE_DOUBLE
#else
#define REAL_MEM_TYPE H5T_NATIVE_FLOAT
#endif

#define SUMMARY_EMBEDDING_STD 0.02 /* KSA_SPEC §9.1 / §9.7 */

/* ---- errors -------------------------------------------------------------------------------- */

static const char *param_shape(char *buf, size_t cap, const ksa_param *e)
{
    hsize_t dims[2] = {e->shape[0], e->ndim == 2 ? e->shape[1] : 0};
    return ksa_h5_format_dims(buf, cap, e->ndim, dims);
}

static int same_shape(const ksa_param *a, const ksa_param *b)
{
    return a->ndim == b->ndim && a->shape[0] == b->shape[0] &&
           (a->ndim == 1 || a->shape[1] == b->shape[1]);
}

/* ---- pass 1: the file agrees with its own /config ------------------------------------------ */
static ksa_status check_dataset(const char *path, hid_t group, const ksa_param *e)
{
    char want[64], got[128];
    param_shape(want, sizeof want, e);
    htri_t has = H5Lexists(group, e->name, H5P_DEFAULT);
    if (has < 0)
        return ksa_h5_fail(KSA_EFORMAT, path, 1, "cannot look up /params/%s", e->name);
    if (!has)
        return ksa_h5_fail(KSA_EFORMAT, path, 0,
                           "/params/%s is missing (the checkpoint's own /config declares it, %s)",
                           e->name, want);
    ksa_status st = KSA_OK;
    hsize_t dims[H5S_MAX_RANK];
    int ndim = -1;
    hid_t dset = H5Dopen2(group, e->name, H5P_DEFAULT), space = -1, type = -1;
    if (dset < 0 || (space = H5Dget_space(dset)) < 0 || (type = H5Dget_type(dset)) < 0 ||
        (ndim = H5Sget_simple_extent_ndims(space)) < 0 ||
        H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        st = ksa_h5_fail(KSA_EFORMAT, path, 1, "cannot open dataset /params/%s", e->name);
        goto done;
    }
    int same = ndim == e->ndim;
    for (int d = 0; same && d < ndim; d++)
        same = dims[d] == e->shape[d];
    if (!same)
        st = ksa_h5_fail(KSA_EFORMAT, path, 0,
                         "/params/%s has shape %s, the checkpoint's own /config declares %s",
                         e->name, ksa_h5_format_dims(got, sizeof got, ndim, dims), want);
    else if (!ksa_h5_is_real(type))
        st = ksa_h5_fail(KSA_EFORMAT, path, 0,
                         "/params/%s does not hold floating-point numbers of " KSA_H5_REAL_SIZES
                         " (HDF5 type class %d, %zu bytes)",
                         e->name, (int)H5Tget_class(type), H5Tget_size(type));
done:
    ksa_h5_close(type, &st, path, e->name);
    ksa_h5_close(space, &st, path, e->name);
    ksa_h5_close(dset, &st, path, e->name);
    return st;
}

/* ---- pass 2: the plan ------------------------------------------------------------------------ */
typedef enum {
    ACT_LOAD,   /* read the file's dataset of the same name */
    ACT_COPY,   /* copy the model's parameter src once it is loaded */
    ACT_NORMAL, /* draw from N(0, 0.02^2) */
    ACT_KEEP    /* leave the model's value */
} action;

typedef struct {
    action act;
    long src;         /* ACT_COPY: index into the model's table */
    const char *note; /* shown after "; " in the report, or NULL */
} plan_entry;

typedef struct {
    char *name;     /* owned */
    char shape[64]; /* "[40, 8]", or "" when unknown */
    const char *note;
} ignored_entry;

typedef struct {
    plan_entry *plan;   /* [model params], owned */
    ignored_entry *ign; /* owned */
    size_t n_ign, cap_ign;
} init_plan;

static void add_ignored(init_plan *pl, const char *name, const char *shape, const char *note)
{
    if (pl->n_ign == pl->cap_ign) {
        pl->cap_ign = pl->cap_ign ? 2 * pl->cap_ign : 16;
        pl->ign = realloc(pl->ign, pl->cap_ign * sizeof *pl->ign);
        KSA_ASSERT(pl->ign, "out of memory for %zu ignored parameters", pl->cap_ign);
    }
    ignored_entry *g = &pl->ign[pl->n_ign++];
    g->name = strdup(name);
    KSA_ASSERT(g->name, "out of memory copying a parameter name");
    snprintf(g->shape, sizeof g->shape, "%s", shape);
    g->note = note;
}

static void plan_free(init_plan *pl)
{
    for (size_t i = 0; i < pl->n_ign; i++)
        free(pl->ign[i].name);
    free(pl->ign);
    free(pl->plan);
}

/* Keys whose values fix parameter shapes; they must agree between file and model. */
typedef struct {
    const char *name;
    long file, model;
} key_diff;

static int first_shape_key_diff(const ksa_model_config *f, const ksa_model_config *c, key_diff *d)
{
    const key_diff keys[] = {
        {"hidden_size", f->hidden_size, c->hidden_size},
        {"num_hidden_layers", f->num_hidden_layers, c->num_hidden_layers},
        {"vocab_size", f->vocab_size, c->vocab_size},
        {"num_attention_heads", f->num_attention_heads, c->num_attention_heads},
        {"num_key_value_heads", f->num_key_value_heads, c->num_key_value_heads},
        {"head_dim", f->head_dim, c->head_dim},
        {"intermediate_size", f->intermediate_size, c->intermediate_size},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i].file != keys[i].model) {
            *d = keys[i];
            return 1;
        }
    return 0;
}

/* A parameter both sides have: the shapes must agree (pass 1 made the file's table its
 * datasets' truth). The message names the key behind the difference when it can.           */
static ksa_status refuse_shape(const char *path, const ksa_param *fe, const ksa_param *me,
                               const ksa_model *fm, const ksa_model *m)
{
    char got[64], want[64], why[192] = "";
    key_diff d;
    if (first_shape_key_diff(&fm->config, &m->config, &d))
        snprintf(why, sizeof why, " (%s is %ld in the checkpoint, %ld in the configuration)",
                 d.name, d.file, d.model);
    else if (fm->layout.S != m->layout.S)
        snprintf(why, sizeof why,
                 " (summary_token_num is %zu in the checkpoint, %zu in the configuration)",
                 fm->layout.S, m->layout.S);
    return ksa_h5_fail(KSA_EINVAL, path, 0,
                       "%s: the checkpoint has %s, the configuration needs %s%s", me->name,
                       param_shape(got, sizeof got, fe), param_shape(want, sizeof want, me), why);
}

/* The model's parameters against the file's table. */
static ksa_status make_plan(const char *path, const ksa_model *fm, const ksa_model *m,
                            ksa_summary_init how, init_plan *pl)
{
    const ksa_params *fp = &fm->params, *mp = &m->params;
    for (size_t i = 0; i < mp->n; i++) {
        long j = ksa_params_find(fp, mp->table[i].name);
        if (j >= 0 && !same_shape(&fp->table[j], &mp->table[i]))
            return refuse_shape(path, &fp->table[j], &mp->table[i], fm, m);
        pl->plan[i] = (plan_entry){.act = ACT_LOAD, .src = -1, .note = NULL};
    }
    /* a layer count difference changes no shape; nor can any other shape key differ
     * without a shape difference above, but say so rather than rely on it              */
    key_diff d;
    if (first_shape_key_diff(&fm->config, &m->config, &d))
        return ksa_h5_fail(
            KSA_EINVAL, path, 0,
            "%s: the checkpoint has %ld, the configuration needs %ld; it cannot change "
            "when initialising from a checkpoint",
            d.name, d.file, d.model);
    for (size_t i = 0; i < mp->n; i++) {
        const ksa_param *e = &mp->table[i];
        plan_entry *pe = &pl->plan[i];
        char want[64];
        if (ksa_params_find(fp, e->name) >= 0)
            continue;     /* ACT_LOAD */
        if (e->summary) { /* KSA_SPEC §9.1: a copy of its shared twin, or drawn */
            if (how == KSA_INIT_SUMMARY_SCRATCH) {
                pe->act = ACT_KEEP;
            } else if (e->twin < 0) {
                pe->act = ACT_NORMAL;
            } else {
                const char *shared = mp->table[e->twin].name;
                if (ksa_params_find(fp, shared) < 0)
                    return ksa_h5_fail(KSA_EFORMAT, path, 0,
                                       "/params/%s is missing and so is %s, to copy it from",
                                       e->name, shared);
                pe->act = ACT_COPY;
                pe->src = e->twin;
            }
        } else if (e->role == KSA_ROLE_LM_HEAD && fm->config.tie_word_embeddings) {
            pe->act = ACT_COPY;
            pe->src = m->embed_tokens;
            pe->note = "the checkpoint ties lm_head to model.embed_tokens.weight";
        } else {
            return ksa_h5_fail(
                KSA_EFORMAT, path, 0,
                "/params/%s is missing (the configuration needs %s; the checkpoint's "
                "/config does not declare it)",
                e->name, param_shape(want, sizeof want, e));
        }
    }
    for (size_t j = 0; j < fp->n; j++) {
        const ksa_param *e = &fp->table[j];
        char shape[64];
        if (ksa_params_find(mp, e->name) >= 0)
            continue;
        const char *note = e->role == KSA_ROLE_LM_HEAD
                               ? "the configuration ties lm_head to model.embed_tokens.weight"
                               : "not a parameter of the configuration";
        add_ignored(pl, e->name, param_shape(shape, sizeof shape, e), note);
    }
    return KSA_OK;
}

/* Objects in /params that the file's /config does not declare (written by another tool):
 * never loaded, only reported.                                                               */
static ksa_status list_undeclared(const char *path, hid_t group, const ksa_params *fp,
                                  init_plan *pl)
{
    H5G_info_t info;
    if (H5Gget_info(group, &info) < 0)
        return ksa_h5_fail(KSA_EFORMAT, path, 1, "cannot list /params");
    for (hsize_t i = 0; i < info.nlinks; i++) {
        ssize_t len =
            H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
        if (len < 0)
            return ksa_h5_fail(KSA_EFORMAT, path, 1, "cannot list /params");
        char *name = malloc((size_t)len + 1);
        KSA_ASSERT(name, "out of memory for a name of %zd bytes", len);
        ksa_status st = KSA_OK;
        if (H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, (size_t)len + 1,
                               H5P_DEFAULT) < 0)
            st = ksa_h5_fail(KSA_EFORMAT, path, 1, "cannot list /params");
        else if (ksa_params_find(fp, name) < 0)
            add_ignored(pl, name, "", "not declared by the checkpoint's /config");
        free(name);
        if (st != KSA_OK)
            return st;
    }
    return KSA_OK;
}

/* ---- pass 3: reading, copies, draws ---------------------------------------------------------- */
static ksa_status read_dataset(const char *path, hid_t group, const ksa_param *e, ksa_real *x)
{
    ksa_status st = KSA_OK;
    hid_t dset = H5Dopen2(group, e->name, H5P_DEFAULT);
    if (dset < 0)
        return ksa_h5_fail(KSA_EIO, path, 1, "cannot open dataset /params/%s", e->name);
    if (H5Dread(dset, REAL_MEM_TYPE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        st = ksa_h5_fail(KSA_EIO, path, 1, "cannot read dataset /params/%s", e->name);
    ksa_h5_close(dset, &st, path, e->name);
    return st;
}

/* One stream per parameter name (FNV-1a), so the values depend on the seed and the name only. */
static void draw_normal(ksa_real *w, size_t n, double std, uint64_t seed, const char *name)
{
    ksa_rng s = ksa_rng_at(seed ^ ksa_hash_string(name));
    for (size_t j = 0; j < n; j++)
        w[j] = (ksa_real)(std * ksa_rng_normal(&s));
}

/* ---- the report ------------------------------------------------------------------------------ */
static const char *model_kind(const ksa_model *m)
{
    return m->layout.ksa ? "summary attention" : "causal";
}

/* What the report says of a parameter of the model, one kind per action. */
static const char *const action_kinds[] = {
    [ACT_LOAD] = "loaded from the checkpoint",
    [ACT_COPY] = "created: copies of loaded parameters",
    [ACT_NORMAL] = "created: drawn from N(0, 0.02^2)",
    [ACT_KEEP] = "kept: the from-scratch init",
};

static void write_report(FILE *f, const char *path, const ksa_model *fm, const ksa_model *m,
                         ksa_summary_init how, const init_plan *pl, int list_all)
{
    enum { N_EXAMPLES = 3 };
    size_t count[4] = {0};
    fprintf(f,
            "init-from %s: a %s checkpoint into a %s configuration; missing summary "
            "parameters: %s\n",
            path, model_kind(fm), model_kind(m),
            how == KSA_INIT_SUMMARY_COPY ? "copies of the shared ones (KSA_SPEC 9.1)"
                                         : "from-scratch init (KSA_SPEC 9.7)");
    for (size_t i = 0; i < m->params.n; i++)
        count[pl->plan[i].act]++;
    /* per kind: the count and the first few names ("a <- b" for copies) */
    for (int act = ACT_LOAD; act <= ACT_KEEP && !list_all; act++) {
        if (!count[act])
            continue;
        fprintf(f, "  %-40s %6zu:", action_kinds[act], count[act]);
        size_t shown = 0;
        for (size_t i = 0; i < m->params.n && shown < N_EXAMPLES; i++) {
            const plan_entry *pe = &pl->plan[i];
            if ((int)pe->act != act)
                continue;
            fprintf(f, "%s %s", shown ? "," : "", m->params.table[i].name);
            if (pe->act == ACT_COPY)
                fprintf(f, " <- %s", m->params.table[pe->src].name);
            shown++;
        }
        fprintf(f, "%s\n", count[act] > shown ? ", ..." : "");
    }
    if (!list_all && pl->n_ign) {
        fprintf(f, "  %-40s %6zu:", "ignored (not in the configuration)", pl->n_ign);
        for (size_t i = 0; i < pl->n_ign && i < N_EXAMPLES; i++)
            fprintf(f, "%s %s", i ? "," : "", pl->ign[i].name);
        fprintf(f, "%s\n", pl->n_ign > N_EXAMPLES ? ", ..." : "");
    }
    for (size_t i = 0; i < m->params.n && list_all; i++) {
        const ksa_param *e = &m->params.table[i];
        const plan_entry *pe = &pl->plan[i];
        char shape[64], what[160];
        switch (pe->act) {
        case ACT_LOAD:
            snprintf(what, sizeof what, "loaded");
            break;
        case ACT_COPY:
            snprintf(what, sizeof what, "created (copy of %s)", m->params.table[pe->src].name);
            break;
        case ACT_NORMAL:
            snprintf(what, sizeof what, "created (N(0, 0.02^2))");
            break;
        case ACT_KEEP:
            snprintf(what, sizeof what, "kept (from-scratch init)");
            break;
        }
        fprintf(f, "  %s %s: %s%s%s\n", e->name, param_shape(shape, sizeof shape, e), what,
                pe->note ? "; " : "", pe->note ? pe->note : "");
    }
    for (size_t i = 0; i < pl->n_ign && list_all; i++) {
        const ignored_entry *g = &pl->ign[i];
        fprintf(f, "  %s%s%s: ignored; %s\n", g->name, g->shape[0] ? " " : "", g->shape, g->note);
    }
    fprintf(f, "init-from %s: %zu loaded, %zu created, %zu kept, %zu ignored\n", path,
            count[ACT_LOAD], count[ACT_COPY] + count[ACT_NORMAL], count[ACT_KEEP], pl->n_ign);
}

/* ---- entry point ----------------------------------------------------------------------------- */
ksa_status ksa_ckpt_init_from(const char *path, ksa_model *m, ksa_summary_init how, uint64_t seed,
                              FILE *report, int list_all)
{
    KSA_ASSERT(m->params.data, "init-from %s: the model's parameters are not allocated", path);
    KSA_ASSERT(how == KSA_INIT_SUMMARY_COPY || how == KSA_INIT_SUMMARY_SCRATCH,
               "init-from: unknown summary initialisation %d", (int)how);
    ksa_h5_quiet();

    ksa_model_config fcfg;
    KSA_TRY(ksa_ckpt_read_config(path, &fcfg)); /* format, version, a valid /config */
    ksa_model fm; /* the file's own table: names and shapes only, no buffers */
    if (ksa_model_declare(&fm, &fcfg) != KSA_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", ksa_last_error());
        ksa_model_free(&fm);
        return ksa_h5_fail(KSA_EFORMAT, path, 0, "/config is not a valid model: %s", why);
    }
    init_plan pl = {0};
    pl.plan = calloc(m->params.n ? m->params.n : 1, sizeof *pl.plan);
    KSA_ASSERT(pl.plan, "out of memory for %zu plan entries", m->params.n);

    ksa_status st = KSA_OK;
    hid_t file = -1, group = -1;
    st = ksa_ckpt_open_verified(path, 1, &file);
    if (st == KSA_OK) {
        htri_t has = H5Lexists(file, "params", H5P_DEFAULT);
        if (has < 0)
            st = ksa_h5_fail(KSA_EFORMAT, path, 1, "cannot look up /params");
        else if (!has)
            st = ksa_h5_fail(KSA_EFORMAT, path, 0, "no /params group");
        else if ((group = H5Gopen2(file, "params", H5P_DEFAULT)) < 0)
            st = ksa_h5_fail(KSA_EFORMAT, path, 1, "cannot open /params as a group");
    }
    for (size_t j = 0; j < fm.params.n && st == KSA_OK; j++)
        st = check_dataset(path, group, &fm.params.table[j]);
    if (st == KSA_OK)
        st = make_plan(path, &fm, m, how, &pl);
    if (st == KSA_OK)
        st = list_undeclared(path, group, &fm.params, &pl);

    /* nothing in m has changed up to here */
    ksa_params *p = &m->params;
    for (size_t i = 0; i < p->n && st == KSA_OK; i++)
        if (pl.plan[i].act == ACT_LOAD)
            st = read_dataset(path, group, &p->table[i], p->data + p->table[i].offset);
    for (size_t i = 0; i < p->n && st == KSA_OK; i++) {
        const ksa_param *e = &p->table[i];
        if (pl.plan[i].act == ACT_COPY) {
            const ksa_param *src = &p->table[pl.plan[i].src];
            KSA_ASSERT(pl.plan[pl.plan[i].src].act == ACT_LOAD && same_shape(src, e),
                       "init-from: %s must be a loaded copy of %s", e->name, src->name);
            memcpy(p->data + e->offset, p->data + src->offset, e->numel * sizeof(ksa_real));
        } else if (pl.plan[i].act == ACT_NORMAL) {
            draw_normal(p->data + e->offset, e->numel, SUMMARY_EMBEDDING_STD, seed, e->name);
        }
    }
    ksa_h5_close(group, &st, path, "/params");
    ksa_h5_close(file, &st, path, "the file");
    if (st == KSA_OK && report)
        write_report(report, path, &fm, m, how, &pl, list_all);
    plan_free(&pl);
    ksa_model_free(&fm);
    return st;
}
