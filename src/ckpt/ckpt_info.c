/* ckpt_info.c - `ksa inspect FILE`: a checkpoint's content from its metadata alone.
 *
 * The file is first read with ksa_ckpt_read_config, so opening, format checks and /config
 * fail with exactly the messages `ksa eval` and `ksa train` give. Then everything else is
 * collected (attribute values, dataset names, shapes and types; never dataset values) and
 * checked against the parameter table ksa_model_declare builds from /config, and only then
 * printed: a file that cannot be loaded as a model prints nothing but the error.          */
#include "ckpt_info.h"
#include "h5util.h"
#include "verify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>

#include "ckpt/ckpt.h"
#include "model/decoder.h"

#define MAX_SHOWN 16  /* values of an array attribute printed before "..." */
#define MAX_READ 4096 /* larger array attributes are summarised, not read */
static const char *const moment_groups[] = {"exp_avg", "exp_avg_sq"};
#define N_MOMENTS 2

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    KSA_ASSERT(d, "out of memory copying %zu bytes", strlen(s));
    return d;
}

/* ---- what is collected ------------------------------------------------------------------- */
typedef struct {
    char *name;  /* owned */
    char *value; /* owned, printable: strings quoted, arrays as [a, b, ...] */
    char *text;  /* owned, a single string's bare text, else NULL */
} attr_text;

typedef struct {
    int present;  /* the group exists */
    attr_text *v; /* owned, n entries, sorted by name */
    size_t n;
} attr_set;

typedef struct {
    char **v; /* owned messages */
    size_t n, cap;
} text_list;

typedef struct {
    const char *path;
    const ksa_config_key *train_keys; /* the training settings' table: their print order */
    size_t n_train_keys;
    long long file_bytes;
    ksa_model model; /* declared from /config: names and shapes, no buffers */
    attr_set root, config, tokenizer, optim, train;
    long long tokenizer_json;        /* bytes of /tokenizer/tokenizer.json, -1: none */
    char (*dtype)[24];               /* [model.params.n]: the type of /params/<name> */
    size_t moments_found[N_MOMENTS]; /* parameters with a well-formed moment dataset */
    text_list problems;              /* of the training state: printed, then reported */
} ckpt_info;

static void text_list_push(text_list *l, char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        KSA_ASSERT(l->v, "out of memory for %zu messages", l->cap);
    }
    l->v[l->n++] = s;
}

static void text_list_free(text_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

__attribute__((format(printf, 2, 3))) static void add_problem(ckpt_info *info, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    text_list_push(&info->problems, xstrdup(msg));
}

static void attr_set_free(attr_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].name);
        free(s->v[i].value);
        free(s->v[i].text);
    }
    free(s->v);
    memset(s, 0, sizeof *s);
}

static const attr_text *attr_find(const attr_set *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i].name, name))
            return &s->v[i];
    return NULL;
}

static void info_free(ckpt_info *info)
{
    ksa_model_free(&info->model);
    attr_set_free(&info->root);
    attr_set_free(&info->config);
    attr_set_free(&info->tokenizer);
    attr_set_free(&info->optim);
    attr_set_free(&info->train);
    free(info->dtype);
    text_list_free(&info->problems);
}

/* ---- formatting --------------------------------------------------------------------------- */
/* Shortest decimal text that reads back to x in the attribute's precision; integral values
 * keep a ".0" so that a float reads as one (rope_theta = 10000.0, not 1e+04). The range is
 * checked before the conversion: a double outside long long's (1e30, inf, NaN) converts to
 * an undefined value.                                                                      */
static void format_real(char *out, size_t cap, double x, int single)
{
    if (x > -1e15 && x < 1e15 && x == (double)(long long)x)
        snprintf(out, cap, "%.1f", x);
    else
        ksa_h5_format_real(out, cap, x, single);
}

/* "[64, 32]" */
static void quote_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

/* "float32", "bfloat16", "int64", "float32 big-endian", ... */
static void describe_type(hid_t t, char *buf, size_t cap)
{
    H5T_class_t cls = H5Tget_class(t);
    size_t bits = 8 * H5Tget_size(t);
    const char *order = H5Tget_order(t) == H5T_ORDER_BE && bits > 8 ? " big-endian" : "";
    if (cls == H5T_FLOAT) {
        size_t spos, epos, esize, mpos, msize;
        int bf16 =
            bits == 16 && H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) >= 0 && esize == 8;
        snprintf(buf, cap, "%sfloat%zu%s", bf16 ? "b" : "", bits, order);
    } else if (cls == H5T_INTEGER) {
        snprintf(buf, cap, "%sint%zu%s", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", bits, order);
    } else {
        snprintf(buf, cap, "HDF5 type class %d", (int)cls);
    }
}

/* ---- reading attribute values --------------------------------------------------------------- */
/* The value of attribute `name` of loc (`where` names loc in messages: "/train"). */
static ksa_status read_attr(const char *path, hid_t loc, const char *where, const char *name,
                            attr_text *out)
{
    ksa_h5_attr a;
    KSA_TRY(ksa_h5_attr_read(path, loc, where, name, MAX_READ, &a));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    KSA_ASSERT(f, "open_memstream: %s", strerror(errno));
    if (a.n == 0) {
        fputs("(no value)", f);
    } else if (a.kind == KSA_H5_OTHER) {
        fprintf(f, "(HDF5 type class %d)", a.type_class);
    } else if (a.n_read == 0) {
        fprintf(f, "(%zu values)", a.n);
    } else {
        fputs(a.array ? "[" : "", f);
        for (size_t k = 0; k < a.n_read && k < MAX_SHOWN; k++) {
            char text[32];
            fputs(k ? ", " : "", f);
            if (a.kind == KSA_H5_INT)
                fprintf(f, "%lld", a.i[k]);
            else if (a.kind == KSA_H5_UINT)
                fprintf(f, "%llu", a.u[k]);
            else if (a.kind == KSA_H5_FLOAT)
                format_real(text, sizeof text, a.f[k], a.single), fputs(text, f);
            else
                quote_string(f, a.s[k]);
        }
        if (a.array && a.n > MAX_SHOWN)
            fprintf(f, ", ... (%zu values)", a.n);
        fputs(a.array ? "]" : "", f);
    }
    fclose(f);
    out->name = xstrdup(name);
    out->value = buf;
    out->text = !a.array && a.kind == KSA_H5_STRING && a.n_read ? xstrdup(a.s[0]) : NULL;
    ksa_h5_attr_free(&a);
    return KSA_OK;
}

static herr_t collect_attr_name(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)loc, (void)info;
    text_list_push(data, xstrdup(name));
    return 0;
}

static herr_t collect_link_name(hid_t group, const char *name, const H5L_info_t *info, void *data)
{
    (void)group, (void)info;
    text_list_push(data, xstrdup(name));
    return 0;
}

/* Every attribute of loc, in name order. */
static ksa_status read_attrs(const char *path, hid_t loc, const char *where, attr_set *s)
{
    text_list names = {0};
    ksa_status st = KSA_OK;
    if (H5Aiterate2(loc, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_attr_name, &names) < 0)
        st = ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot list the attributes of %s", where);
    s->present = 1;
    s->v = calloc(names.n ? names.n : 1, sizeof *s->v);
    KSA_ASSERT(s->v, "out of memory for %zu attributes", names.n);
    for (size_t i = 0; i < names.n && st == KSA_OK; i++)
        if ((st = read_attr(path, loc, where, names.v[i], &s->v[i])) == KSA_OK)
            s->n++;
    text_list_free(&names);
    return st;
}

/* ---- groups and datasets --------------------------------------------------------------------- */

typedef enum { DSET_OK, DSET_MISSING, DSET_NOT_DATASET } dset_state;

typedef struct {
    dset_state state;
    int ndim, is_real; /* is_real: floats of 2, 4 or 8 bytes (ksa_h5_is_real) */
    hsize_t dims[H5S_MAX_RANK];
    char dtype[24];
} dset_meta;

/* Shape and type of group/name (`where` = "/params/<name>" in messages), no values. An HDF5
 * failure (corrupted metadata) is an error; a missing name or a group is reported in m.  */
static ksa_status read_dset_meta(const char *path, hid_t group, const char *name, const char *where,
                                 dset_meta *m)
{
    memset(m, 0, sizeof *m);
    htri_t has = H5Lexists(group, name, H5P_DEFAULT);
    if (has < 0)
        return ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot look up %s", where);
    if (!has) {
        m->state = DSET_MISSING;
        return KSA_OK;
    }
    hid_t obj = H5Oopen(group, name, H5P_DEFAULT), space = -1, type = -1;
    if (obj < 0)
        return ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot open dataset %s", where);
    ksa_status st = KSA_OK;
    if (H5Iget_type(obj) != H5I_DATASET) {
        m->state = DSET_NOT_DATASET;
    } else if ((space = H5Dget_space(obj)) < 0 || (type = H5Dget_type(obj)) < 0 ||
               (m->ndim = H5Sget_simple_extent_ndims(space)) < 0 ||
               H5Sget_simple_extent_dims(space, m->dims, NULL) < 0) {
        st = ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot read the shape and type of dataset %s",
                            where);
    } else {
        m->is_real = ksa_h5_is_real(type);
        describe_type(type, m->dtype, sizeof m->dtype);
    }
    ksa_h5_close(type, NULL, "", "");
    ksa_h5_close(space, NULL, "", "");
    ksa_h5_close(obj, NULL, "", "");
    return st;
}

static int same_shape(const dset_meta *m, const ksa_param *e)
{
    if (m->ndim != e->ndim)
        return 0;
    for (int d = 0; d < e->ndim; d++)
        if (m->dims[d] != e->shape[d])
            return 0;
    return 1;
}

static const char *param_dims(char *buf, size_t cap, const ksa_param *e)
{
    hsize_t dims[2] = {e->shape[0], e->shape[1]};
    return ksa_h5_format_dims(buf, cap, e->ndim, dims);
}

/* The names of every link in group. */
static ksa_status list_links(const char *path, hid_t group, const char *where, text_list *names)
{
    hsize_t idx = 0;
    if (H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_link_name, names) < 0)
        return ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot list %s", where);
    return KSA_OK;
}

/* /params: every parameter of the table, with its shape and a float type; nothing else. */
static ksa_status check_params(ckpt_info *info, hid_t file)
{
    const char *path = info->path;
    const ksa_params *p = &info->model.params;
    hid_t group;
    KSA_TRY(ksa_h5_open_group(path, file, "/params", 0, &group));
    if (group < 0)
        return ksa_h5_fail_at(KSA_EFORMAT, path, "no /params group");
    info->dtype = calloc(p->n ? p->n : 1, sizeof *info->dtype);
    KSA_ASSERT(info->dtype, "out of memory for %zu names", p->n);
    ksa_status st = KSA_OK;
    char where[160], want[64], got[128];
    for (size_t i = 0; i < p->n && st == KSA_OK; i++) {
        const ksa_param *e = &p->table[i];
        dset_meta m;
        snprintf(where, sizeof where, "/params/%s", e->name);
        if ((st = read_dset_meta(path, group, e->name, where, &m)) != KSA_OK)
            break;
        param_dims(want, sizeof want, e);
        if (m.state == DSET_MISSING)
            st = ksa_h5_fail_at(KSA_EFORMAT, path, "%s is missing (the configuration needs %s)",
                                where, want);
        else if (m.state == DSET_NOT_DATASET)
            st = ksa_h5_fail_at(KSA_EFORMAT, path, "%s is not a dataset", where);
        else if (!same_shape(&m, e))
            st = ksa_h5_fail_at(KSA_EFORMAT, path, "%s has shape %s, the configuration needs %s",
                                where, ksa_h5_format_dims(got, sizeof got, m.ndim, m.dims), want);
        else if (!m.is_real)
            st = ksa_h5_fail_at(KSA_EFORMAT, path,
                                "%s holds %s, not floating-point numbers of " KSA_H5_REAL_SIZES,
                                where, m.dtype);
        else
            snprintf(info->dtype[i], sizeof info->dtype[i], "%s", m.dtype);
    }
    text_list names = {0};
    if (st == KSA_OK)
        st = list_links(path, group, "/params", &names);
    for (size_t i = 0; i < names.n && st == KSA_OK; i++)
        if (ksa_params_find(p, names.v[i]) < 0)
            st = ksa_h5_fail_at(KSA_EFORMAT, path,
                                "/params/%s is not a parameter of the configuration", names.v[i]);
    text_list_free(&names);
    ksa_h5_close(group, NULL, "", "");
    return st;
}

/* /optim/<moment>: one dataset per parameter with its shape; problems are recorded. */
static ksa_status check_moment(ckpt_info *info, hid_t file, size_t k)
{
    const char *path = info->path, *moment = moment_groups[k];
    const ksa_params *p = &info->model.params;
    char gname[32], where[192], want[64], got[128];
    snprintf(gname, sizeof gname, "/optim/%s", moment);
    hid_t group;
    KSA_TRY(ksa_h5_open_group(path, file, gname, 0, &group));
    if (group < 0) {
        add_problem(info, "no %s group: the optimizer state has no %s moments", gname, moment);
        return KSA_OK;
    }
    ksa_status st = KSA_OK;
    for (size_t i = 0; i < p->n && st == KSA_OK; i++) {
        const ksa_param *e = &p->table[i];
        dset_meta m;
        if (e->frozen) /* not trained: no optimizer state */
            continue;
        snprintf(where, sizeof where, "%s/%s", gname, e->name);
        if ((st = read_dset_meta(path, group, e->name, where, &m)) != KSA_OK)
            break;
        param_dims(want, sizeof want, e);
        if (m.state == DSET_MISSING)
            add_problem(info, "%s is missing", where);
        else if (m.state == DSET_NOT_DATASET)
            add_problem(info, "%s is not a dataset", where);
        else if (!same_shape(&m, e))
            add_problem(info, "%s has shape %s, the parameter has %s", where,
                        ksa_h5_format_dims(got, sizeof got, m.ndim, m.dims), want);
        else if (!m.is_real)
            add_problem(info, "%s holds %s, not floating-point numbers of " KSA_H5_REAL_SIZES,
                        where, m.dtype);
        else
            info->moments_found[k]++;
    }
    text_list names = {0};
    if (st == KSA_OK)
        st = list_links(path, group, gname, &names);
    for (size_t i = 0; i < names.n && st == KSA_OK; i++)
        if (ksa_params_find(p, names.v[i]) < 0)
            add_problem(info, "%s/%s is not a parameter of the configuration", gname, names.v[i]);
    text_list_free(&names);
    ksa_h5_close(group, NULL, "", "");
    return st;
}

/* Attributes CHECKPOINT_FORMAT.md requires of /optim and /train. */
static const char *const optim_required[] = {"type", "beta1", "beta2", "eps", "weight_decay"};
static const char *const train_state[] = {"step", "tokens_seen", "seed", "world_size"};
static const char *const train_schedule[] = {"lr_schedule",  "lr",          "min_lr",
                                             "warmup_steps", "decay_steps", "steps"};
static const char *const train_data[] = {"data", "data_mix", "val_data"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The parameters the run froze (its training keys trainable and frozen, autograd/params.h):
 * they have no moments. Keys that select nothing valid are a problem of the file. */
static ksa_status mark_frozen(ckpt_info *info, char *why, size_t cap)
{
    const attr_text *tr = attr_find(&info->train, "trainable");
    const attr_text *fr = attr_find(&info->train, "frozen");
    const char *trainable = tr && tr->text ? tr->text : "",
               *frozen = fr && fr->text ? fr->text : "";
    ksa_status st = ksa_params_select_trainable(&info->model.params, trainable, frozen);
    if (st != KSA_OK)
        snprintf(why, cap, "%s", ksa_last_error());
    return st;
}

/* /optim: its attributes and both moments' datasets; problems are recorded. */
static ksa_status check_optim(ckpt_info *info, hid_t file)
{
    const char *path = info->path;
    hid_t group;
    KSA_TRY(ksa_h5_open_group(path, file, "/optim", 0, &group));
    if (group < 0)
        return KSA_OK;
    ksa_status st = read_attrs(path, group, "/optim", &info->optim);
    ksa_h5_close(group, NULL, "", "");
    KSA_TRY(st);
    for (size_t i = 0; i < COUNT(optim_required); i++)
        if (!attr_find(&info->optim, optim_required[i]))
            add_problem(info, "/optim lacks the attribute '%s'", optim_required[i]);
    const attr_text *type = attr_find(&info->optim, "type");
    if (type && (!type->text || strcmp(type->text, "adamw") != 0))
        add_problem(info, "/optim type is %s, this program knows only \"adamw\"", type->value);
    for (size_t k = 0; k < N_MOMENTS; k++)
        KSA_TRY(check_moment(info, file, k));
    return KSA_OK;
}

static ksa_status check_training_state(ckpt_info *info, hid_t file)
{
    const char *path = info->path;
    hid_t group;
    /* /train's attributes first: they say which parameters were frozen (no moments) */
    KSA_TRY(ksa_h5_open_group(path, file, "/train", 0, &group));
    if (group >= 0) {
        ksa_status st = read_attrs(path, group, "/train", &info->train);
        ksa_h5_close(group, NULL, "", "");
        KSA_TRY(st);
    }
    char frozen_why[600];
    ksa_status frozen = mark_frozen(info, frozen_why, sizeof frozen_why);
    KSA_TRY(check_optim(info, file));
    if (info->train.present) {
        for (size_t i = 0; i < COUNT(train_state); i++)
            if (!attr_find(&info->train, train_state[i]))
                add_problem(info, "/train lacks the attribute '%s'", train_state[i]);
        for (size_t i = 0; i < COUNT(train_data); i++) { /* resumable from any folder */
            const attr_text *a = attr_find(&info->train, train_data[i]);
            if (a && a->text && a->text[0] && a->text[0] != '/')
                add_problem(info, "/train %s = %s is not an absolute path", a->name, a->value);
        }
        if (frozen != KSA_OK)
            add_problem(info, "/train: %s", frozen_why);
    }
    if (info->train.present && !info->optim.present)
        add_problem(info, "/train is present but /optim is not: the run cannot be resumed");
    if (info->optim.present && !info->train.present)
        add_problem(info, "/optim is present but /train is not: the run cannot be resumed");
    return KSA_OK;
}

static ksa_status collect(ckpt_info *info)
{
    const char *path = info->path;
    struct stat sb;
    info->file_bytes = stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
    ksa_h5_quiet();
    hid_t file = -1, group = -1;
    KSA_TRY(ksa_ckpt_open_verified(path, 0, &file)); /* metadata: the values are not read */
    ksa_status st = read_attrs(path, file, "root", &info->root);
    if (st == KSA_OK && (st = ksa_h5_open_group(path, file, "/config", 0, &group)) == KSA_OK) {
        st = read_attrs(path, group, "/config", &info->config); /* it exists: read_config */
        ksa_h5_close(group, NULL, "", "");
    }
    if (st == KSA_OK)
        st = check_params(info, file);
    if (st == KSA_OK && (st = ksa_h5_open_group(path, file, "/tokenizer", 0, &group)) == KSA_OK &&
        group >= 0) {
        st = read_attrs(path, group, "/tokenizer", &info->tokenizer);
        info->tokenizer_json = -1;
        if (st == KSA_OK && H5Lexists(group, "tokenizer.json", H5P_DEFAULT) > 0) {
            hid_t dset = H5Dopen2(group, "tokenizer.json", H5P_DEFAULT);
            hid_t space = dset >= 0 ? H5Dget_space(dset) : -1;
            hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
            if (n < 0)
                st = ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot read /tokenizer/tokenizer.json");
            info->tokenizer_json = n;
            ksa_h5_close(space, NULL, "", "");
            ksa_h5_close(dset, NULL, "", "");
        }
        ksa_h5_close(group, NULL, "", "");
    }
    if (st == KSA_OK)
        st = check_training_state(info, file);
    ksa_h5_close(file, NULL, "", "");
    return st;
}

/* ---- printing ------------------------------------------------------------------------------- */
static void print_attr_or_absent(const attr_set *s, const char *name, FILE *out)
{
    const attr_text *a = attr_find(s, name);
    if (a)
        fprintf(out, "%s = %s\n", a->name, a->value);
    else
        fprintf(out, "# %s: absent\n", name);
}

static int in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(name, list[i]))
            return 1;
    return 0;
}

static void print_config(const ckpt_info *info, FILE *out)
{
    size_t n;
    const ksa_config_key *keys = ksa_model_config_keys(&n);
    fprintf(out, "\n# model configuration (/config)\n");
    for (size_t i = 0; i < n; i++) /* the configuration table's order: related keys together */
        if (attr_find(&info->config, keys[i].name))
            print_attr_or_absent(&info->config, keys[i].name, out);
    for (size_t i = 0; i < n; i++)
        if (!attr_find(&info->config, keys[i].name))
            print_attr_or_absent(&info->config, keys[i].name, out);
    for (size_t i = 0; i < info->config.n; i++)
        if (!ksa_model_config_has_key(info->config.v[i].name))
            fprintf(out, "%s = %s  # not a model configuration key: ignored\n",
                    info->config.v[i].name, info->config.v[i].value);
    fprintf(out, "\n# layers\n");
    ksa_model_layout_print(&info->model.layout, out);
}

static void print_params(const ckpt_info *info, FILE *out)
{
    const ksa_params *p = &info->model.params;
    size_t count = ksa_params_count(p), width = 0;
    fprintf(out, "\n# parameters: %zu (%.3f M) in %zu tensors\n", count, (double)count / 1e6, p->n);
    for (size_t i = 0; i < p->n; i++)
        if (strlen(p->table[i].name) > width)
            width = strlen(p->table[i].name);
    char dims[64];
    for (size_t i = 0; i < p->n; i++)
        fprintf(out, "%-*s  %-12s  %s\n", (int)width, p->table[i].name,
                param_dims(dims, sizeof dims, &p->table[i]), info->dtype[i]);
}

static void print_optim(const ckpt_info *info, FILE *out)
{
    if (!info->optim.present) {
        fprintf(out, "\n# optimizer: absent (no /optim: not a training checkpoint)\n");
        return;
    }
    fprintf(out, "\n# optimizer (/optim)\n");
    for (size_t i = 0; i < COUNT(optim_required); i++)
        print_attr_or_absent(&info->optim, optim_required[i], out);
    for (size_t i = 0; i < info->optim.n; i++)
        if (!in_list(info->optim.v[i].name, optim_required, COUNT(optim_required)))
            fprintf(out, "%s = %s\n", info->optim.v[i].name, info->optim.v[i].value);
    size_t n = ksa_params_n_trainable(&info->model.params, NULL), all = info->model.params.n;
    char frozen[64] = "";
    const char *what = n < all ? "trained parameters" : "parameters";
    if (n < all)
        snprintf(frozen, sizeof frozen, "; the %zu frozen ones have none", all - n);
    if (info->moments_found[0] == n && info->moments_found[1] == n)
        fprintf(out,
                "moments: exp_avg and exp_avg_sq present for all %zu %s, with their shapes%s\n", n,
                what, frozen);
    else
        fprintf(out, "moments: exp_avg for %zu of %zu %s, exp_avg_sq for %zu of %zu%s\n",
                info->moments_found[0], n, what, info->moments_found[1], n, frozen);
}

static void print_train(const ckpt_info *info, FILE *out)
{
    if (!info->train.present) {
        fprintf(out, "\n# training state: absent (no /train: not a training checkpoint)\n");
        return;
    }
    const attr_set *t = &info->train;
    fprintf(out, "\n# training state (/train)\n");
    for (size_t i = 0; i < COUNT(train_state); i++)
        print_attr_or_absent(t, train_state[i], out);
    fprintf(out, "# schedule\n");
    for (size_t i = 0; i < COUNT(train_schedule); i++)
        print_attr_or_absent(t, train_schedule[i], out);
    fprintf(out, "# data\n");
    for (size_t i = 0; i < COUNT(train_data); i++)
        print_attr_or_absent(t, train_data[i], out);
    /* the rest: training keys in the configuration table's order, then anything else
     * (data-loader and RNG state) by name                                              */
    size_t n = info->n_train_keys;
    const ksa_config_key *keys = info->train_keys;
    int header = 0;
    for (size_t pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < (pass ? t->n : n); i++) {
            const char *name = pass ? t->v[i].name : keys[i].name;
            const attr_text *a = attr_find(t, name);
            if (!a || in_list(name, train_state, COUNT(train_state)) ||
                in_list(name, train_schedule, COUNT(train_schedule)) ||
                in_list(name, train_data, COUNT(train_data)) ||
                (pass == 1 && ksa_config_key_find(keys, n, name)))
                continue;
            if (!header++)
                fprintf(out, "# other training keys and state\n");
            fprintf(out, "%s = %s\n", a->name, a->value);
        }
}

static void print_info(const ckpt_info *info, FILE *out)
{
    fprintf(out, "# checkpoint %s (%lld bytes)\n", info->path, info->file_bytes);
    print_attr_or_absent(&info->root, "format", out);
    print_attr_or_absent(&info->root, "format_version", out);
    print_config(info, out);
    print_params(info, out);
    if (info->tokenizer.present) {
        fprintf(out, "\n# tokenizer (/tokenizer)\n");
        print_attr_or_absent(&info->tokenizer, "type", out);
        for (size_t i = 0; i < info->tokenizer.n; i++)
            if (strcmp(info->tokenizer.v[i].name, "type") != 0)
                fprintf(out, "%s = %s\n", info->tokenizer.v[i].name, info->tokenizer.v[i].value);
        if (info->tokenizer_json >= 0)
            fprintf(out,
                    "tokenizer.json = %lld bytes (a Hugging Face tokenizer, stored verbatim; "
                    "type is its identity)\n",
                    info->tokenizer_json);
    } else {
        fprintf(out, "\n# tokenizer: absent (no /tokenizer): byte tokenizer assumed, no "
                     "special tokens\n");
    }
    print_optim(info, out);
    print_train(info, out);
    if (info->problems.n) {
        fprintf(out, "\n# problems: this run cannot be resumed from this file\n");
        for (size_t i = 0; i < info->problems.n; i++)
            fprintf(out, "PROBLEM: %s\n", info->problems.v[i]);
    }
}

ksa_status ksa_ckpt_info_print(const char *path, const ksa_config_key *train_keys,
                               size_t n_train_keys, FILE *out)
{
    ckpt_info info;
    memset(&info, 0, sizeof info);
    info.path = path;
    info.train_keys = train_keys;
    info.n_train_keys = n_train_keys;
    ksa_model_config cfg;
    /* open, format, format_version and /config exactly as every other reader checks them */
    KSA_TRY(ksa_ckpt_read_config(path, &cfg));
    if (ksa_model_declare(&info.model, &cfg) != KSA_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", ksa_last_error());
        ksa_model_free(&info.model);
        return ksa_h5_fail_at(KSA_EFORMAT, path, "/config is not a valid model: %s", why);
    }
    ksa_status st = collect(&info);
    if (st == KSA_OK) {
        print_info(&info, out);
        if (info.problems.n > 1)
            st = ksa_h5_fail_at(KSA_EFORMAT, path,
                                "%s (and %zu more problems, listed above): the training state is "
                                "incomplete",
                                info.problems.v[0], info.problems.n - 1);
        else if (info.problems.n == 1)
            st = ksa_h5_fail_at(KSA_EFORMAT, path, "%s: the training state is incomplete",
                                info.problems.v[0]);
    }
    info_free(&info);
    return st;
}
