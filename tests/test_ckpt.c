/* test_ckpt.c - HDF5 checkpoints: round trips, the types CHECKPOINT_FORMAT.md promises (also
 * as h5py sees them), files from other writers, refused inputs, the tmp + rename discipline.
 * Files live in a mkdtemp folder that the group teardown removes.                          */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "autograd/params.h"
#include "ckpt/ckpt.h"
#include "model/config.h"
#include "train/train_config.h"

/* ---- the scratch folder ----------------------------------------------------------------- */
static char dir[64];

static int make_dir(void **state)
{
    (void)state;
    return test_scratch_make(dir, sizeof dir, "ksa_ckpt");
}

static int remove_dir(void **state)
{
    (void)state;
    return test_remove_tree(dir);
}

static const char *in_dir(const char *name)
{
    return test_path_in(dir, name);
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static void expect_error(ksa_status got, ksa_status want, const char *needle)
{
    if (got != want)
        fail_msg("status %d (%s), expected %d; message: %s", got, ksa_status_name(got), want,
                 ksa_last_error());
    if (!strstr(ksa_last_error(), needle))
        fail_msg("message '%s' lacks '%s'", ksa_last_error(), needle);
}

/* ---- configurations and parameter tables --------------------------------------------------- */
static void set_all(ksa_model_config *c, const char *const *kv, size_t n)
{
    for (size_t i = 0; i < n; i += 2)
        if (ksa_model_config_set(c, kv[i], kv[i + 1], "test") != KSA_OK)
            fail_msg("%s", ksa_last_error());
}

#define TINY                                                                                       \
    "vocab_size", "40", "hidden_size", "8", "num_hidden_layers", "4", "num_attention_heads", "2",  \
        "num_key_value_heads", "1", "head_dim", "4", "intermediate_size", "12",                    \
        "max_position_embeddings", "4096"

/* Summary attention sharing the token embedding (summary_token_begin set), patterns, an
 * explicit summary_independent_qkv, every boolean away from its default.                    */
static void config_shared(ksa_model_config *c)
{
    ksa_model_config_defaults(c);
    /* one key and its value per line */
    /* clang-format off */
    const char *kv[] = {TINY,
                        "rope_theta", "500000",
                        "rms_norm_eps", "1e-5",
                        "tie_word_embeddings", "true",
                        "use_summary_attention", "true",
                        "summary_chunk_size", "4",
                        "summary_token_num", "2",
                        "summary_sliding_chunk_num", "([3]*1+[5]*1)*2",
                        "summary_layer_freq", "[1,1,0,1]",
                        "summary_independent_parameters", "false",
                        "summary_independent_qkv", "true",
                        "summary_independent_attention_layernorm", "true",
                        "summary_independent_qk_norm", "true",
                        "summary_chunk_position_ids_type", "inner_chunk",
                        "summary_token_position_ids_type", "zeros",
                        "summary_token_begin", "30"};
    /* clang-format on */
    set_all(c, kv, sizeof kv / sizeof kv[0]);
}

/* Independent summary parameters, summary_independent_qkv unset (follows them), integer
 * pattern keys, summary_token_begin unset.                                                  */
static void config_independent(ksa_model_config *c)
{
    ksa_model_config_defaults(c);
    /* clang-format off */
    const char *kv[] = {TINY,
                        "rms_norm_eps", "3e-7",
                        "use_summary_attention", "true",
                        "summary_chunk_size", "4",
                        "summary_token_num", "3",
                        "summary_sliding_chunk_num", "7",
                        "summary_layer_freq", "2",
                        "summary_independent_parameters", "true"};
    /* clang-format on */
    set_all(c, kv, sizeof kv / sizeof kv[0]);
    assert_int_equal(c->summary_independent_qkv, -1);
    assert_int_equal(c->summary_token_begin, -1);
}

/* The table of CHECKPOINT_FORMAT.md for a configuration (the model code will own this). */
static void declare_model(ksa_params *p, const ksa_model_config *c)
{
    ksa_model_layout l;
    if (ksa_model_config_resolve(c, &l) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    size_t V = (size_t)c->vocab_size, D = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    size_t dh = (size_t)c->head_dim, Q = (size_t)c->num_attention_heads * dh;
    size_t KV = (size_t)c->num_key_value_heads * dh;
    char n[KSA_PARAM_NAME_MAX];
    ksa_params_init(p);
    ksa_params_add(p, "model.embed_tokens.weight", 2, V, D);
    if (l.ksa && l.independent_embedding)
        ksa_params_add(p, "summary_embedding.weight", 2, l.S, D);
#define ADD(suffix, nd, d0, d1)                                                                    \
    (snprintf(n, sizeof n, "model.layers.%zu.%s", i, suffix), ksa_params_add(p, n, nd, d0, d1))
    for (size_t i = 0; i < l.n_layers; i++) {
        int summary = l.ksa && l.is_summary[i];
        ADD("input_layernorm.weight", 1, D, 0);
        if (summary && l.independent_norm)
            ADD("input_layernorm_summary.weight", 1, D, 0);
        ADD("self_attn.q_proj.weight", 2, Q, D);
        ADD("self_attn.k_proj.weight", 2, KV, D);
        ADD("self_attn.v_proj.weight", 2, KV, D);
        ADD("self_attn.o_proj.weight", 2, D, Q);
        ADD("self_attn.q_norm.weight", 1, dh, 0);
        ADD("self_attn.k_norm.weight", 1, dh, 0);
        if (summary && l.independent_qkv) {
            ADD("self_attn.q_proj_summary.weight", 2, Q, D);
            ADD("self_attn.k_proj_summary.weight", 2, KV, D);
            ADD("self_attn.v_proj_summary.weight", 2, KV, D);
        }
        if (summary && l.independent_qk_norm) {
            ADD("self_attn.q_norm_summary.weight", 1, dh, 0);
            ADD("self_attn.k_norm_summary.weight", 1, dh, 0);
        }
        ADD("post_attention_layernorm.weight", 1, D, 0);
        ADD("mlp.gate_proj.weight", 2, I, D);
        ADD("mlp.up_proj.weight", 2, I, D);
        ADD("mlp.down_proj.weight", 2, D, I);
    }
#undef ADD
    ksa_params_add(p, "model.norm.weight", 1, D, 0);
    if (!c->tie_word_embeddings)
        ksa_params_add(p, "lm_head.weight", 2, V, D);
    ksa_params_alloc(p);
}

typedef struct {
    const char *name;
    int ndim;
    size_t d0, d1;
} spec;

static void declare_list(ksa_params *p, const spec *s, size_t n)
{
    ksa_params_init(p);
    for (size_t i = 0; i < n; i++)
        ksa_params_add(p, s[i].name, s[i].ndim, s[i].d0, s[i].d1);
    ksa_params_alloc(p);
}

static void fill_random(ksa_real *base, const ksa_params *p, uint64_t seed)
{
    test_rng r = test_rng_seed(seed);
    for (size_t i = 0; i < p->n; i++)
        test_fill_uniform(base + p->table[i].offset, p->table[i].numel, -2, 2, &r);
}

/* got equals want as stored in a float32 file: bit-exact in the float build, want rounded
 * to float in the float64 build.                                                            */
static void expect_float32_copy(const ksa_real *got, const ksa_real *want, size_t n,
                                const char *what)
{
    for (size_t i = 0; i < n; i++) {
        ksa_real w = (ksa_real)(float)want[i];
        if (memcmp(&got[i], &w, sizeof w) != 0)
            fail_msg("%s[%zu]: got %.17g, want %.17g", what, i, (double)got[i], (double)w);
    }
}

static void expect_same_values(const ksa_params *got, const ksa_params *want)
{
    assert_int_equal(got->n, want->n);
    for (size_t i = 0; i < want->n; i++) {
        const ksa_param *e = &want->table[i];
        assert_string_equal(got->table[i].name, e->name);
        expect_float32_copy(got->data + got->table[i].offset, want->data + e->offset, e->numel,
                            e->name);
    }
}

/* Field by field through the key table, after the writer's resolution: summary_independent_qkv
 * resolved, summary_token_begin kept only where the model uses it.                          */
static void expect_same_config(const ksa_model_config *got, const ksa_model_config *want_in)
{
    ksa_model_config want = *want_in;
    if (want.summary_independent_qkv < 0)
        want.summary_independent_qkv = want.summary_independent_parameters;
    ksa_model_layout l;
    assert_int_equal(ksa_model_config_resolve(&want, &l), KSA_OK);
    if (!l.ksa || l.independent_embedding)
        want.summary_token_begin = -1;
    size_t n;
    const ksa_config_key *keys = ksa_model_config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        const char *a = (const char *)got + keys[i].offset;
        const char *b = (const char *)&want + keys[i].offset;
        switch (keys[i].kind) {
        case KSA_KEY_INT:
        case KSA_KEY_BOOL:
            if (*(const long *)a != *(const long *)b)
                fail_msg("%s: got %ld, want %ld", keys[i].name, *(const long *)a, *(const long *)b);
            break;
        case KSA_KEY_FLOAT:
            if (*(const double *)a != *(const double *)b)
                fail_msg("%s: got %.17g, want %.17g", keys[i].name, *(const double *)a,
                         *(const double *)b);
            break;
        case KSA_KEY_STRING:
            if (strcmp(a, b) != 0)
                fail_msg("%s: got '%s', want '%s'", keys[i].name, a, b);
            break;
        }
    }
}

static void write_model_or_fail(const char *path, const ksa_model_config *c, const ksa_params *p)
{
    ksa_status st = ksa_ckpt_write_model(path, c, p, 7);
    if (st != KSA_OK)
        fail_msg("write %s: %s", path, ksa_last_error());
}

/* ---- HDF5 helpers for inspecting and hand-writing files ------------------------------------ */
static hid_t open_rw(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

/* An attribute with a given file type; one_element_array: a [1] dataspace as H5LT writes. */
static void put_attr(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v,
                     int one_element_array)
{
    hsize_t one = 1;
    hid_t space = one_element_array ? H5Screate_simple(1, &one, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(space >= 0 && a >= 0);
    assert_true(H5Awrite(a, mtype, v) >= 0);
    H5Aclose(a);
    H5Sclose(space);
}

static void put_int(hid_t loc, const char *name, hid_t ftype, long long v, int array)
{
    put_attr(loc, name, ftype, H5T_NATIVE_LLONG, &v, array);
}

static void put_vstr(hid_t loc, const char *name, const char *s)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    put_attr(loc, name, t, t, &s, 0);
    H5Tclose(t);
}

/* Fixed-length string of `size` bytes (> strlen), padded as asked (numpy bytes: NULLPAD). */
static void put_fstr(hid_t loc, const char *name, const char *s, size_t size, H5T_str_t pad,
                     int array)
{
    char buf[512];
    assert_true(size < sizeof buf && strlen(s) <= size);
    memset(buf, pad == H5T_STR_SPACEPAD ? ' ' : 0, sizeof buf);
    memcpy(buf, s, strlen(s));
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, size);
    H5Tset_strpad(t, pad);
    put_attr(loc, name, t, t, buf, array);
    H5Tclose(t);
}

/* numpy's bool as h5py stores it: an int8 enum FALSE = 0, TRUE = 1 */
static void put_h5py_bool(hid_t loc, const char *name, int v)
{
    hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
    signed char f = 0, tr = 1, x = (signed char)v;
    H5Tenum_insert(t, "FALSE", &f);
    H5Tenum_insert(t, "TRUE", &tr);
    put_attr(loc, name, t, t, &x, 0);
    H5Tclose(t);
}

static void replace_attr_int(const char *path, const char *obj, const char *name, long long v)
{
    hid_t f = open_rw(path), o = H5Oopen(f, obj, H5P_DEFAULT);
    assert_true(o >= 0);
    assert_true(H5Adelete(o, name) >= 0);
    put_int(o, name, H5T_STD_I64LE, v, 0);
    H5Oclose(o);
    H5Fclose(f);
}

static void delete_attr(const char *path, const char *obj, const char *name)
{
    hid_t f = open_rw(path), o = H5Oopen(f, obj, H5P_DEFAULT);
    assert_true(o >= 0);
    assert_true(H5Adelete(o, name) >= 0);
    H5Oclose(o);
    H5Fclose(f);
}

/* Attribute `name` of loc: its class and size, and that its dataspace is scalar. */
static void expect_attr_type(hid_t loc, const char *name, H5T_class_t cls, size_t size)
{
    if (H5Aexists(loc, name) <= 0)
        fail_msg("attribute '%s' is missing", name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = H5Aget_type(a), s = H5Aget_space(a);
    if (H5Sget_simple_extent_type(s) != H5S_SCALAR)
        fail_msg("attribute '%s' does not have a scalar dataspace", name);
    if (H5Tget_class(t) != cls)
        fail_msg("attribute '%s' has class %d, want %d", name, (int)H5Tget_class(t), (int)cls);
    if (cls == H5T_STRING) {
        if (H5Tis_variable_str(t) != 0 || H5Tget_cset(t) != H5T_CSET_UTF8 ||
            H5Tget_strpad(t) != H5T_STR_NULLPAD)
            fail_msg("attribute '%s' is not a fixed-length NUL-padded UTF-8 string", name);
    } else if (H5Tget_size(t) != size) {
        fail_msg("attribute '%s' has %zu bytes, want %zu", name, H5Tget_size(t), size);
    }
    if (cls == H5T_INTEGER && H5Tget_sign(t) != H5T_SGN_2)
        fail_msg("attribute '%s' is not a signed integer", name);
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
}

static herr_t count_attr(hid_t loc, const char *name, const H5A_info_t *info, void *n)
{
    (void)loc, (void)name, (void)info;
    ++*(size_t *)n;
    return 0;
}

static long long attr_int(hid_t loc, const char *name)
{
    expect_attr_type(loc, name, H5T_INTEGER, 8);
    long long v;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    assert_true(H5Aread(a, H5T_NATIVE_LLONG, &v) >= 0);
    H5Aclose(a);
    return v;
}

static double attr_double(hid_t loc, const char *name)
{
    expect_attr_type(loc, name, H5T_FLOAT, 8);
    double v;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    assert_true(H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0);
    H5Aclose(a);
    return v;
}

static void expect_attr_string(hid_t loc, const char *name, const char *want)
{
    expect_attr_type(loc, name, H5T_STRING, 0);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = H5Aget_type(a);
    size_t size = H5Tget_size(t); /* the text's length (1 for ""), NUL-padded */
    char *v = calloc(size + 1, 1);
    assert_non_null(v);
    assert_true(H5Aread(a, t, v) >= 0);
    if (size != (strlen(want) ? strlen(want) : 1) || strcmp(v, want) != 0)
        fail_msg("attribute '%s' is '%s' in %zu bytes, want '%s'", name, v, size, want);
    free(v);
    H5Tclose(t);
    H5Aclose(a);
}

/* Runs f with stderr sent to a file; returns what was printed (malloc'ed). */
static char *stderr_of(ksa_status (*f)(const char *, ksa_model_config *), const char *path,
                       ksa_model_config *c, ksa_status *st)
{
    const char *log = in_dir("stderr.txt");
    fflush(stderr);
    int saved = dup(2), fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    *st = f(path, c);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *in = fopen(log, "r");
    assert_non_null(in);
    char *text = calloc(1, 8192);
    size_t n = fread(text, 1, 8191, in);
    text[n] = '\0';
    fclose(in);
    unlink(log);
    return text;
}

/* ---- tests --------------------------------------------------------------------------------- */
static void model_round_trips_through_a_checkpoint(void **state)
{
    (void)state;
    void (*configs[])(ksa_model_config *) = {config_shared, config_independent};
    for (size_t k = 0; k < 2; k++) {
        ksa_model_config c, got;
        configs[k](&c);
        ksa_params p, q;
        declare_model(&p, &c);
        fill_random(p.data, &p, 100 + k);
        const char *path = in_dir("round.h5");
        write_model_or_fail(path, &c, &p);
        memset(&got, 0x5a, sizeof got);
        if (ksa_ckpt_read_config(path, &got) != KSA_OK)
            fail_msg("%s", ksa_last_error());
        expect_same_config(&got, &c);
        declare_model(&q, &got);
        assert_int_equal(q.n, p.n);
        if (ksa_ckpt_read_params(path, &q, 0) != KSA_OK)
            fail_msg("%s", ksa_last_error());
        expect_same_values(&q, &p);
#ifdef KSA_REAL_DOUBLE /* the file really is float32: the double values did not survive */
        assert_true(q.data[0] != p.data[0] && q.data[0] == (double)(float)p.data[0]);
#endif
        ksa_params_free(&p);
        ksa_params_free(&q);
        unlink(path);
    }
}

static void the_file_has_the_types_of_the_contract(void **state)
{
    (void)state;
    ksa_model_config c;
    config_shared(&c);
    ksa_params p;
    declare_model(&p, &c);
    fill_random(p.data, &p, 7);
    const char *path = in_dir("types.h5");
    write_model_or_fail(path, &c, &p);

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    expect_attr_string(f, "format", "ksa-checkpoint");
    assert_int_equal(attr_int(f, "format_version"), 2);

    hid_t g = H5Gopen2(f, "config", H5P_DEFAULT);
    assert_true(g >= 0);
    size_t n;
    const ksa_config_key *keys = ksa_model_config_keys(&n);
    for (size_t i = 0; i < n; i++) /* every key, defaults included */
        if (H5Aexists(g, keys[i].name) <= 0)
            fail_msg("/config lacks '%s'", keys[i].name);
    size_t n_attrs = 0; /* and nothing else */
    assert_true(H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, NULL, count_attr, &n_attrs) >= 0);
    assert_int_equal(n_attrs, n);
    assert_int_equal(attr_int(g, "hidden_size"), 8);
    assert_int_equal(attr_int(g, "max_position_embeddings"), 4096);
    assert_int_equal(attr_int(g, "tie_word_embeddings"), 1); /* bool: int 0/1 */
    assert_int_equal(attr_int(g, "summary_independent_parameters"), 0);
    assert_int_equal(attr_int(g, "summary_independent_qk_norm"), 1);
    assert_int_equal(attr_int(g, "summary_token_begin"), 30); /* shared embedding: present */
    assert_true(attr_double(g, "rms_norm_eps") == 1e-5);
    assert_true(attr_double(g, "rope_theta") == 500000.0);
    expect_attr_string(g, "summary_sliding_chunk_num", "([3]*1+[5]*1)*2"); /* bare pattern */
    expect_attr_string(g, "summary_layer_freq", "[1,1,0,1]");
    expect_attr_string(g, "summary_chunk_position_ids_type", "inner_chunk");
    H5Gclose(g);

    g = H5Gopen2(f, "params", H5P_DEFAULT);
    assert_true(g >= 0);
    H5G_info_t ginfo;
    assert_true(H5Gget_info(g, &ginfo) >= 0);
    assert_int_equal(ginfo.nlinks, p.n);
    for (size_t i = 0; i < p.n; i++) {
        const ksa_param *e = &p.table[i];
        hid_t d = H5Dopen2(g, e->name, H5P_DEFAULT);
        if (d < 0)
            fail_msg("/params/%s is missing", e->name);
        hid_t t = H5Dget_type(d), s = H5Dget_space(d);
        if (H5Tequal(t, H5T_IEEE_F32LE) <= 0)
            fail_msg("/params/%s is not float32", e->name);
        hsize_t dims[2] = {0, 0};
        assert_int_equal(H5Sget_simple_extent_ndims(s), e->ndim);
        H5Sget_simple_extent_dims(s, dims, NULL);
        assert_int_equal(dims[0], e->shape[0]);
        if (e->ndim == 2)
            assert_int_equal(dims[1], e->shape[1]);
        H5Sclose(s);
        H5Tclose(t);
        H5Dclose(d);
    }
    H5Gclose(g);

    g = H5Gopen2(f, "tokenizer", H5P_DEFAULT);
    assert_true(g >= 0);
    expect_attr_string(g, "type", "byte");
    assert_int_equal(attr_int(g, "eot_id"), 7);
    H5Gclose(g);
    H5Fclose(f);

    /* integer patterns stay integers, an unset summary_token_begin is left out and
     * summary_independent_qkv is written resolved                                          */
    config_independent(&c);
    ksa_params_free(&p);
    declare_model(&p, &c);
    write_model_or_fail(path, &c, &p);
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g = H5Gopen2(f, "config", H5P_DEFAULT);
    assert_true(f >= 0 && g >= 0);
    assert_int_equal(attr_int(g, "summary_sliding_chunk_num"), 7);
    assert_int_equal(attr_int(g, "summary_layer_freq"), 2);
    assert_int_equal(attr_int(g, "summary_independent_qkv"), 1);
    assert_int_equal(attr_int(g, "summary_independent_qk_norm"), 0);
    assert_int_equal(H5Aexists(g, "summary_token_begin"), 0);
    H5Gclose(g);
    H5Fclose(f);
    /* set but unused (independent summary embedding): still left out */
    set_all(&c, (const char *[]){"summary_token_begin", "5"}, 2);
    write_model_or_fail(path, &c, &p);
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g = H5Gopen2(f, "config", H5P_DEFAULT);
    assert_true(f >= 0 && g >= 0);
    assert_int_equal(H5Aexists(g, "summary_token_begin"), 0);
    H5Gclose(g);
    H5Fclose(f);
    ksa_model_config got;
    if (ksa_ckpt_read_config(path, &got) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    assert_int_equal(got.summary_token_begin, -1);
    ksa_params_free(&p);
    unlink(path);
}

static int have_h5py(void)
{
    return access("/usr/bin/python3", X_OK) == 0 &&
           system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") == 0;
}

static void h5py_reads_the_file_without_this_code(void **state)
{
    (void)state;
    if (!have_h5py()) {
        print_message("/usr/bin/python3 with h5py not available: check skipped\n");
        skip();
    }
    ksa_model_config c;
    config_shared(&c);
    ksa_params p;
    declare_model(&p, &c);
    fill_random(p.data, &p, 11);
    const char *path = in_dir("py.h5"), *script = in_dir("check.py");
    write_model_or_fail(path, &c, &p);
    long k = ksa_params_find(&p, "model.layers.1.self_attn.k_proj.weight");
    assert_true(k >= 0);
    float value = (float)p.data[p.table[k].offset + 1]; /* element [0, 1] */
    FILE *py = fopen(script, "w");
    assert_non_null(py);
    fputs("import sys, h5py, numpy\n"
          "f = h5py.File(sys.argv[1], 'r')\n"
          "assert f.attrs['format'] == b'ksa-checkpoint', f.attrs['format']\n"
          "assert f.attrs['format_version'] == 2\n"
          "c = f['config'].attrs\n"
          "assert c['hidden_size'] == 8, c['hidden_size']\n"
          "assert c['summary_sliding_chunk_num'] == b'([3]*1+[5]*1)*2', "
          "c['summary_sliding_chunk_num']\n"
          "assert c['rms_norm_eps'] == 1e-5 and c['summary_token_begin'] == 30\n"
          "d = f['params/model.layers.1.self_attn.k_proj.weight']\n"
          "assert d.shape == (4, 8) and d.dtype == 'float32', (d.shape, d.dtype)\n"
          "assert d[0, 1] == numpy.float32(sys.argv[2]), (d[0, 1], sys.argv[2])\n"
          "assert f['params/model.norm.weight'].shape == (8,)\n"
          "assert f['tokenizer'].attrs['type'] == b'byte'\n"
          "assert f['tokenizer'].attrs['eot_id'] == 7\n"
          /* the checksum of CHECKPOINT_FORMAT.md, computed independently */
          "u = numpy.uint64\n"
          "def checksum(a):\n"
          "    x = numpy.ascontiguousarray(a, dtype='<f4').reshape(-1).view(numpy.uint32)\n"
          "    z = (numpy.arange(x.size, dtype=u) << u(32)) + x.astype(u)\n"
          "    z = (z ^ (z >> u(30))) * u(0xBF58476D1CE4E5B9)\n"
          "    z = (z ^ (z >> u(27))) * u(0x94D049BB133111EB)\n"
          "    return int((z ^ (z >> u(31))).sum(dtype=u))\n"
          "n = 0\n"
          "for name, d in f['params'].items():\n"
          "    assert int(d.attrs['checksum']) == checksum(d[()]), name\n"
          "    n += 1\n"
          "assert n == len(f['params']) and n > 10, n\n",
          py);
    fclose(py);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %.9g", script, path, (double)value);
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("h5py check failed (exit status %d): %s", rc, cmd);
    ksa_params_free(&p);
    unlink(path);
    unlink(script);
}

/* A file in the styles other writers use: H5LT 1-element arrays, narrow and big-endian
 * integers, float32, fixed-length strings (NUL- and space-padded), h5py booleans, integer
 * pattern keys, summary_independent_qk_norm absent, attributes we do not know.              */
static void files_from_other_writers_are_accepted(void **state)
{
    (void)state;
    ksa_model_config c;
    config_shared(&c);
    set_all(&c,
            (const char *[]){"summary_layer_freq", "2", "summary_independent_qk_norm", "false",
                             "rms_norm_eps", "2e-6"},
            6);
    const char *path = in_dir("foreign.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    put_fstr(f, "format", "ksa-checkpoint", 20, H5T_STR_SPACEPAD, 0);
    put_int(f, "format_version", H5T_STD_I32LE, 1, 1);
    hid_t g = H5Gcreate2(f, "config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(g >= 0);
    size_t n;
    const ksa_config_key *keys = ksa_model_config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        const ksa_config_key *k = &keys[i];
        const char *field = (const char *)&c + k->offset;
        if (!strcmp(k->name, "summary_independent_qk_norm"))
            continue;
        switch (k->kind) {
        case KSA_KEY_INT:
            put_int(g, k->name, i % 2 ? H5T_STD_I32LE : H5T_STD_U16BE, *(const long *)field, i % 2);
            break;
        case KSA_KEY_BOOL: /* h5py enums holding 0 and 1, and one int8 array */
            if (strcmp(k->name, "tie_word_embeddings") != 0)
                put_h5py_bool(g, k->name, (int)*(const long *)field);
            else
                put_int(g, k->name, H5T_STD_I8LE, *(const long *)field, 1);
            break;
        case KSA_KEY_FLOAT: {
            float v = (float)*(const double *)field;
            put_attr(g, k->name, H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, &v, i % 2);
            break;
        }
        case KSA_KEY_STRING:
            if (!strcmp(field, "2"))
                put_int(g, k->name, H5T_STD_I32LE, 2, 1);
            else
                put_fstr(g, k->name, field, strlen(field) + 3,
                         i % 2 ? H5T_STR_SPACEPAD : H5T_STR_NULLPAD, i % 3 == 0);
            break;
        }
    }
    put_vstr(g, "torch_dtype", "float32");
    put_int(g, "architectures_count", H5T_STD_I64LE, 1, 0);
    H5Gclose(g);
    H5Fclose(f);

    ksa_model_config got;
    ksa_status st;
    char *err = stderr_of(ksa_ckpt_read_config, path, &got, &st);
    if (st != KSA_OK)
        fail_msg("%s", ksa_last_error());
    expect_same_config(&got, &c);
    char want[600];
    snprintf(want, sizeof want,
             "warning: %s: /config attribute 'architectures_count' is not a known key; ignored\n"
             "warning: %s: /config attribute 'torch_dtype' is not a known key; ignored\n",
             path, path);
    assert_string_equal(err, want);
    free(err);
    unlink(path);
}

static void missing_or_bad_config_attributes_are_named(void **state)
{
    (void)state;
    ksa_model_config c, got;
    config_shared(&c);
    ksa_params p;
    declare_model(&p, &c);
    const char *path = in_dir("cfg.h5");
    write_model_or_fail(path, &c, &p);
    delete_attr(path, "/config", "hidden_size");
    expect_error(ksa_ckpt_read_config(path, &got), KSA_EFORMAT,
                 "/config lacks the attribute 'hidden_size'");

    write_model_or_fail(path, &c, &p);
    hid_t f = open_rw(path), g = H5Gopen2(f, "config", H5P_DEFAULT);
    assert_true(H5Adelete(g, "num_hidden_layers") >= 0);
    put_vstr(g, "num_hidden_layers", "four");
    H5Gclose(g);
    H5Fclose(f);
    char want[600];
    snprintf(want, sizeof want,
             "checkpoint %s: /config attribute 'num_hidden_layers': num_hidden_layers = 'four' "
             "is not an integer",
             path);
    expect_error(ksa_ckpt_read_config(path, &got), KSA_EINVAL, want);

    write_model_or_fail(path, &c, &p);
    f = open_rw(path);
    g = H5Gopen2(f, "config", H5P_DEFAULT);
    assert_true(H5Adelete(g, "rope_theta") >= 0);
    hsize_t three = 3;
    double v3[3] = {1, 2, 3};
    hid_t s = H5Screate_simple(1, &three, NULL);
    hid_t a = H5Acreate2(g, "rope_theta", H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_DOUBLE, v3) >= 0);
    H5Aclose(a);
    H5Sclose(s);
    H5Gclose(g);
    H5Fclose(f);
    expect_error(ksa_ckpt_read_config(path, &got), KSA_EFORMAT,
                 "/config attribute 'rope_theta' holds 3 values, expected one");

    /* a configuration the model code would refuse is refused with the file named */
    write_model_or_fail(path, &c, &p);
    replace_attr_int(path, "/config", "head_dim", 5);
    expect_error(ksa_ckpt_read_config(path, &got), KSA_EFORMAT,
                 "/config is not a valid model: head_dim = 5 must be even");

    /* without summary attention the summary_* keys may be missing; optional keys always */
    ksa_model_config plain;
    ksa_model_config_defaults(&plain);
    set_all(&plain, (const char *[]){TINY}, 16);
    write_model_or_fail(path, &plain, &p);
    delete_attr(path, "/config", "summary_chunk_size");
    delete_attr(path, "/config", "summary_layer_freq");
    delete_attr(path, "/config", "summary_independent_qk_norm");
    if (ksa_ckpt_read_config(path, &got) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    expect_same_config(&got, &plain);
    ksa_params_free(&p);
    unlink(path);
}

static void files_that_are_not_checkpoints_are_refused(void **state)
{
    (void)state;
    ksa_model_config c;
    ksa_params p;
    config_shared(&c);
    declare_model(&p, &c);
    char want[600];

    const char *missing = in_dir("missing.h5");
    snprintf(want, sizeof want, "cannot open checkpoint %s: No such file or directory", missing);
    expect_error(ksa_ckpt_read_config(missing, &c), KSA_EIO, want);
    expect_error(ksa_ckpt_read_params(missing, &p, 0), KSA_EIO, want);

    const char *text = in_dir("text.h5");
    FILE *t = fopen(text, "w");
    assert_non_null(t);
    fputs("hidden_size = 8\n", t);
    fclose(t);
    snprintf(want, sizeof want, "checkpoint %s is not an HDF5 file", text);
    expect_error(ksa_ckpt_read_config(text, &c), KSA_EFORMAT, want);
    expect_error(ksa_ckpt_read_params(text, &p, 0), KSA_EFORMAT, want);
    unlink(text);

    const char *bare = in_dir("bare.h5");
    hid_t f = H5Fcreate(bare, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    H5Fclose(f);
    expect_error(ksa_ckpt_read_config(bare, &c), KSA_EFORMAT,
                 "no root attribute 'format': not a ksa checkpoint");
    f = open_rw(bare);
    put_vstr(f, "format", "other-format");
    H5Fclose(f);
    expect_error(ksa_ckpt_read_params(bare, &p, 0), KSA_EFORMAT,
                 "root attribute format is 'other-format', expected 'ksa-checkpoint'");
    unlink(bare);

    const char *newer = in_dir("v2.h5");
    write_model_or_fail(newer, &c, &p);
    replace_attr_int(newer, "/", "format_version", 4);
    snprintf(want, sizeof want,
             "checkpoint %s: format_version 4 is newer than this program "
             "reads (3)",
             newer);
    expect_error(ksa_ckpt_read_config(newer, &c), KSA_EFORMAT, want);
    expect_error(ksa_ckpt_read_params(newer, &p, 0), KSA_EFORMAT, want);
    delete_attr(newer, "/", "format_version");
    expect_error(ksa_ckpt_read_config(newer, &c), KSA_EFORMAT,
                 "no root attribute 'format_version'");
    unlink(newer);
    ksa_params_free(&p);
}

static void params_must_match_the_table_exactly(void **state)
{
    (void)state;
    ksa_model_config c;
    config_shared(&c);
    const spec written[] = {{"model.embed_tokens.weight", 2, 40, 8},
                            {"model.layers.0.self_attn.q_proj.weight", 2, 64, 64},
                            {"model.norm.weight", 1, 8, 0}};
    ksa_params p, q;
    declare_list(&p, written, 3);
    fill_random(p.data, &p, 3);
    const char *path = in_dir("shapes.h5");
    if (ksa_ckpt_write_model(path, &c, &p, 7) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    char want[600];

    spec wrong[] = {written[0], {"model.layers.0.self_attn.q_proj.weight", 2, 64, 32}, written[2]};
    declare_list(&q, wrong, 3);
    snprintf(want, sizeof want,
             "checkpoint %s: /params/model.layers.0.self_attn.q_proj.weight has shape [64, 64], "
             "the configuration needs [64, 32]",
             path);
    expect_error(ksa_ckpt_read_params(path, &q, 0), KSA_EFORMAT, want);
    ksa_params_free(&q);

    spec rank[] = {written[0], written[1], {"model.norm.weight", 2, 8, 1}};
    declare_list(&q, rank, 3);
    expect_error(ksa_ckpt_read_params(path, &q, 1), KSA_EFORMAT,
                 "/params/model.norm.weight has shape [8], the configuration needs [8, 1]");
    ksa_params_free(&q);

    /* floats of 64 bytes: HDF5 would convert them through buffers of 64 bytes an element, and
     * a damaged file's float of 4 GiB through buffers it cannot have (tests/fuzz/fuzz_ckpt.c) */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), wide = H5Tcopy(H5T_IEEE_F64LE);
    assert_true(f >= 0 && wide >= 0 && H5Tset_size(wide, 64) >= 0);
    assert_true(
        H5Lmove(f, "/params/model.norm.weight", f, "/norm_saved", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    hsize_t n8 = 8;
    hid_t sp = H5Screate_simple(1, &n8, NULL);
    hid_t d =
        H5Dcreate2(f, "/params/model.norm.weight", wide, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(sp >= 0 && d >= 0);
    H5Dclose(d), H5Sclose(sp), H5Tclose(wide), H5Fclose(f);
    declare_list(&q, written, 3);
    expect_error(ksa_ckpt_read_params(path, &q, 0), KSA_EFORMAT,
                 "/params/model.norm.weight does not hold floating-point numbers of 2, 4 or 8 "
                 "bytes (HDF5 type class 1, 64 bytes)");
    ksa_params_free(&q);
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0 && H5Ldelete(f, "/params/model.norm.weight", H5P_DEFAULT) >= 0);
    assert_true(
        H5Lmove(f, "/norm_saved", f, "/params/model.norm.weight", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    H5Fclose(f);

    spec more[] = {written[0], written[1], written[2], {"lm_head.weight", 2, 40, 8}};
    declare_list(&q, more, 4);
    expect_error(ksa_ckpt_read_params(path, &q, 1), KSA_EFORMAT,
                 "/params/lm_head.weight is missing (the configuration needs [40, 8])");
    ksa_params_free(&q);

    spec fewer[] = {written[2], written[0]}; /* order of the table does not matter */
    declare_list(&q, fewer, 2);
    snprintf(want, sizeof want,
             "checkpoint %s: /params/model.layers.0.self_attn.q_proj.weight is not a parameter "
             "of the configuration",
             path);
    expect_error(ksa_ckpt_read_params(path, &q, 0), KSA_EFORMAT, want);
    if (ksa_ckpt_read_params(path, &q, 1) != KSA_OK) /* allowed extras are skipped */
        fail_msg("%s", ksa_last_error());
    expect_float32_copy(q.data + q.table[0].offset, p.data + p.table[2].offset, 8, "norm");
    expect_float32_copy(q.data + q.table[1].offset, p.data, 40 * 8, "embed");
    ksa_params_free(&q);
    ksa_params_free(&p);
    unlink(path);
}

static void writes_go_through_a_tmp_file_and_failures_leave_nothing(void **state)
{
    (void)state;
    ksa_model_config c;
    config_shared(&c);
    ksa_params p;
    declare_model(&p, &c);
    fill_random(p.data, &p, 5);
    /* a folder of its own, so that its listing at the end is exactly what this test left */
    assert_int_equal(mkdir(in_dir("disc"), 0700), 0);
    char path[512], tmp[512];
    snprintf(path, sizeof path, "%s", in_dir("disc/keep.h5"));
    snprintf(tmp, sizeof tmp, "%s", in_dir("disc/keep.h5.tmp"));
    write_model_or_fail(path, &c, &p);
    assert_true(exists(path));
    assert_false(exists(tmp));

    /* a folder that does not exist: an error naming the file, and nothing created */
    const char *nowhere = in_dir("disc/no/such/folder/x.h5");
    expect_error(ksa_ckpt_write_model(nowhere, &c, &p, 7), KSA_EIO,
                 "no/such/folder/x.h5.tmp': No such file or directory");
    assert_false(exists(in_dir("disc/no")));
    expect_error(ksa_ckpt_write_grads(nowhere, &p), KSA_EIO, "cannot create");
    assert_false(exists(in_dir("disc/no")));

    /* a failure half-way (a dataset HDF5 cannot create) over an existing checkpoint: the old
     * file stays intact and the temporary is removed                                       */
    const spec bad[] = {{"model.norm.weight", 1, 8, 0}, {"no_such_group/w", 1, 4, 0}};
    ksa_params b;
    declare_list(&b, bad, 2);
    expect_error(ksa_ckpt_write_model(path, &c, &b, 7), KSA_EIO,
                 "cannot create dataset /params/no_such_group/w");
    assert_false(exists(tmp));
    ksa_params q;
    declare_model(&q, &c);
    if (ksa_ckpt_read_params(path, &q, 0) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    expect_same_values(&q, &p);
    expect_error(ksa_ckpt_write_grads(in_dir("disc/g.h5"), &b), KSA_EIO,
                 "cannot create dataset /grads/no_such_group/w");
    assert_false(exists(in_dir("disc/g.h5")));
    assert_false(exists(in_dir("disc/g.h5.tmp")));

    /* a configuration no reader could rebuild is refused before any file exists */
    ksa_model_config badcfg = c;
    badcfg.summary_token_begin = -1;
    expect_error(ksa_ckpt_write_model(in_dir("disc/bad.h5"), &badcfg, &p, 7), KSA_EINVAL,
                 "refusing to write an invalid configuration: summary_token_begin must be set");
    assert_false(exists(in_dir("disc/bad.h5")));
    assert_false(exists(in_dir("disc/bad.h5.tmp")));

    /* the folder holds only the checkpoint */
    DIR *d = opendir(in_dir("disc"));
    assert_non_null(d);
    struct dirent *e;
    int entries = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            entries++, assert_string_equal(e->d_name, "keep.h5");
    closedir(d);
    assert_int_equal(entries, 1);
    ksa_params_free(&b);
    ksa_params_free(&q);
    ksa_params_free(&p);
    unlink(path);
    rmdir(in_dir("disc"));
}

/* The file offset of dataset `name`'s values (contiguous storage). */
static off_t data_offset(const char *path, const char *name)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, name, H5P_DEFAULT);
    assert_true(f >= 0 && d >= 0);
    haddr_t at = H5Dget_offset(d);
    assert_true(at != HADDR_UNDEF);
    H5Dclose(d);
    H5Fclose(f);
    return (off_t)at;
}

static void flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    unsigned char b;
    assert_true(fd >= 0 && pread(fd, &b, 1, at) == 1);
    b ^= 0x20;
    assert_true(pwrite(fd, &b, 1, at) == 1);
    close(fd);
}

/* CHECKPOINT_FORMAT.md, Integrity: a changed value, a missing checksum and a non-finite
 * parameter are refused naming the dataset; the structure is checked without reading values
 * (read_config passes over damaged values); a crash or a hang while checking the file is
 * one clear error (the checking child, made to crash or hang by the test hook).           */
static void damage_and_non_finite_values_are_refused_naming_the_dataset(void **state)
{
    (void)state;
    ksa_model_config c, back;
    config_shared(&c);
    ksa_params p;
    declare_model(&p, &c);
    fill_random(p.data, &p, 17);
    const char *name = "model.layers.1.self_attn.k_proj.weight";
    char want[512];

    const char *flipped = in_dir("flipped.h5");
    write_model_or_fail(flipped, &c, &p);
    flip_byte(flipped, data_offset(flipped, "/params/model.layers.1.self_attn.k_proj.weight") + 5);
    if (ksa_ckpt_read_config(flipped, &back) != KSA_OK) /* attributes only: values not read */
        fail_msg("%s", ksa_last_error());
    snprintf(want, sizeof want,
             "checkpoint %s: damaged: dataset /params/%s does not match its "
             "checksum",
             flipped, name);
    expect_error(ksa_ckpt_read_params(flipped, &p, 0), KSA_EFORMAT, want);

    const char *unchecked = in_dir("unchecked.h5");
    write_model_or_fail(unchecked, &c, &p);
    hid_t f = H5Fopen(unchecked, H5F_ACC_RDWR, H5P_DEFAULT),
          d = H5Dopen2(f, "/params/model.norm.weight", H5P_DEFAULT);
    assert_true(d >= 0 && H5Adelete(d, "checksum") >= 0);
    H5Dclose(d);
    H5Fclose(f);
    expect_error(ksa_ckpt_read_config(unchecked, &back), KSA_EFORMAT,
                 "damaged: dataset /params/model.norm.weight has no checksum");

    const char *nan_file = in_dir("nan.h5");
    long k = ksa_params_find(&p, name);
    assert_true(k >= 0);
    ksa_real kept = p.data[p.table[k].offset + 8 + 3];
    p.data[p.table[k].offset + 8 + 3] = (ksa_real)NAN; /* row 1, column 3 of [4, 8] */
    write_model_or_fail(nan_file, &c, &p);
    p.data[p.table[k].offset + 8 + 3] = kept;
    snprintf(want, sizeof want,
             "checkpoint %s: dataset /params/%s holds a non-finite value (nan) "
             "at element [1, 3]",
             nan_file, name);
    expect_error(ksa_ckpt_read_params(nan_file, &p, 0), KSA_EFORMAT, want);

    const char *crash = in_dir("crash.h5"), *hang = in_dir("hang.h5");
    write_model_or_fail(crash, &c, &p);
    write_model_or_fail(hang, &c, &p);
    setenv("KSA_TEST_FAULT", "verify_crash", 1);
    snprintf(want, sizeof want,
             "checkpoint %s is damaged: reading it crashed HDF5 (Segmentation "
             "fault)",
             crash);
    expect_error(ksa_ckpt_read_config(crash, &back), KSA_EFORMAT, want);
    setenv("KSA_TEST_FAULT", "verify_hang", 1);
    snprintf(want, sizeof want, "checkpoint %s is damaged: reading it did not finish within 1 s",
             hang);
    expect_error(ksa_ckpt_read_config(hang, &back), KSA_EFORMAT, want);
    unsetenv("KSA_TEST_FAULT");
    if (ksa_ckpt_read_params(crash, &p, 0) != KSA_OK) /* the files themselves are sound */
        fail_msg("%s", ksa_last_error());
    ksa_params_free(&p);
}

static void gradients_are_written_with_the_parameter_shapes(void **state)
{
    (void)state;
    const spec s[] = {{"model.layers.0.mlp.down_proj.weight", 2, 6, 10},
                      {"model.norm.weight", 1, 6, 0}};
    ksa_params p;
    declare_list(&p, s, 2);
    fill_random(p.data, &p, 1);
    fill_random(p.grad, &p, 2);
    const char *path = in_dir("grads.h5");
    if (ksa_ckpt_write_grads(path, &p) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    assert_false(exists(in_dir("grads.h5.tmp")));
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    for (size_t i = 0; i < p.n; i++) {
        const ksa_param *e = &p.table[i];
        char name[128];
        snprintf(name, sizeof name, "/grads/%s", e->name);
        hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
        assert_true(d >= 0);
        hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
        assert_true(H5Tequal(t, H5T_IEEE_F32LE) > 0);
        hsize_t dims[2] = {0, 0};
        assert_int_equal(H5Sget_simple_extent_ndims(sp), e->ndim);
        H5Sget_simple_extent_dims(sp, dims, NULL);
        assert_int_equal(dims[0], e->shape[0]);
        assert_int_equal(dims[1], e->shape[1]);
        ksa_real got[60];
        assert_true(H5Dread(d, sizeof(ksa_real) == 4 ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE,
                            H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0);
        expect_float32_copy(got, p.grad + e->offset, e->numel, e->name); /* grads, not data */
        H5Sclose(sp);
        H5Tclose(t);
        H5Dclose(d);
    }
    H5Fclose(f);

    int found = -1;
    assert_int_equal(ksa_ckpt_has(path, "/grads/model.norm.weight", &found), KSA_OK);
    assert_int_equal(found, 1);
    assert_int_equal(ksa_ckpt_has(path, "/grads", &found), KSA_OK);
    assert_int_equal(found, 1);
    assert_int_equal(ksa_ckpt_has(path, "/params", &found), KSA_OK);
    assert_int_equal(found, 0);
    assert_int_equal(ksa_ckpt_has(path, "/params/model.norm.weight", &found), KSA_OK);
    assert_int_equal(found, 0);
    assert_int_equal(ksa_ckpt_has(path, "/grads/model.norm.weight/x", &found), KSA_OK);
    assert_int_equal(found, 0);
    expect_error(ksa_ckpt_has(path, "grads", &found), KSA_EINVAL, "is not absolute");
    ksa_params_free(&p);
    unlink(path);
}

/* /train keeps every training key at its full length: paths of up to KSA_PATH_STR - 1
 * characters read back for a resume (they were refused above 511 characters). */
static void training_keys_read_back_at_their_longest(void **state)
{
    (void)state;
    ksa_model_config c;
    config_independent(&c);
    ksa_params p;
    declare_model(&p, &c);
    fill_random(p.data, &p, 7);
    ksa_train_config tc, back;
    ksa_train_config_defaults(&tc);
    memset(tc.data, 'd', KSA_PATH_STR - 1);
    tc.data[0] = '/';
    tc.data[KSA_PATH_STR - 1] = '\0';
    snprintf(tc.val_data, sizeof tc.val_data, "/%0600d", 7);
    size_t n_keys;
    const ksa_config_key *keys = ksa_train_config_keys(&n_keys);
    ksa_real *zeros = calloc(p.numel, sizeof *zeros);
    assert_non_null(zeros);
    ksa_ckpt_train_state ts = {.train_keys = keys,
                               .n_train_keys = n_keys,
                               .train = &tc,
                               .adamw = {tc.beta1, tc.beta2, tc.adam_eps, tc.weight_decay},
                               .step = 2,
                               .tokens_seen = 64,
                               .world_size = 1,
                               .exp_avg = zeros,
                               .exp_avg_sq = zeros};
    const char *path = in_dir("long_paths.h5");
    if (ksa_ckpt_write_training(path, &c, &p, 0, &ts) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    ksa_ckpt_progress pr;
    if (ksa_train_config_read_checkpoint(path, &back, &pr) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    assert_string_equal(back.data, tc.data);
    assert_string_equal(back.val_data, tc.val_data);
    assert_int_equal(pr.step, 2);
    free(zeros);
    ksa_params_free(&p);
    unlink(path);
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the tests probe missing objects on purpose */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(model_round_trips_through_a_checkpoint),
        cmocka_unit_test(the_file_has_the_types_of_the_contract),
        cmocka_unit_test(h5py_reads_the_file_without_this_code),
        cmocka_unit_test(files_from_other_writers_are_accepted),
        cmocka_unit_test(missing_or_bad_config_attributes_are_named),
        cmocka_unit_test(files_that_are_not_checkpoints_are_refused),
        cmocka_unit_test(params_must_match_the_table_exactly),
        cmocka_unit_test(writes_go_through_a_tmp_file_and_failures_leave_nothing),
        cmocka_unit_test(damage_and_non_finite_values_are_refused_naming_the_dataset),
        cmocka_unit_test(gradients_are_written_with_the_parameter_shapes),
        cmocka_unit_test(training_keys_read_back_at_their_longest),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
