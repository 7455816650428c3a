/* test_ckpt_info.c - `ksa inspect FILE`: what ksa_ckpt_info_print shows of model and
 * training checkpoints (the training layout written here by hand with the HDF5 API, as
 * CHECKPOINT_FORMAT.md describes it), that it reads metadata only, and that every kind of
 * bad file is refused with a message naming the problem, nothing printed and the file
 * unchanged. Files live in a mkdtemp folder that the group teardown removes.              */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "ckpt/ckpt.h"
#include "ckpt/ckpt_info.h"
#include "model/decoder.h"
#include "train/train_config.h"

/* ---- the scratch folder ----------------------------------------------------------------- */
static char dir[64];

static int make_dir(void **state)
{
    (void)state;
    return test_scratch_make(dir, sizeof dir, "ksa_info");
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

/* ---- running the inspector ------------------------------------------------------------------ */
/* What ksa_ckpt_info_print printed (malloc'ed) and its status. */
static char *info_of(const char *path, ksa_status *st)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    size_t n_keys;
    const ksa_config_key *keys = ksa_train_config_keys(&n_keys);
    *st = ksa_ckpt_info_print(path, keys, n_keys, f);
    fclose(f);
    return buf;
}

/* The text with every run of spaces squeezed to one (column alignment is not the contract). */
static char *squeeze(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    assert_non_null(out);
    for (; *s; s++)
        if (!(*s == ' ' && o > out && o[-1] == ' '))
            *o++ = *s;
    *o = '\0';
    return out;
}

static void expect_in(const char *text, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("output lacks\n---\n%s\n--- in\n%s", needle, text);
}

static void expect_not_in(const char *text, const char *needle)
{
    if (strstr(text, needle))
        fail_msg("output has '%s':\n%s", needle, text);
}

/* Prints fine; returns the squeezed output (malloc'ed). */
static char *inspect_ok(const char *path)
{
    ksa_status st;
    char *raw = info_of(path, &st);
    if (st != KSA_OK)
        fail_msg("%s: %s\n%s", path, ksa_last_error(), raw);
    char *s = squeeze(raw);
    free(raw);
    return s;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *n = 0;
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    assert_int_equal(*n, (size_t)len);
    return buf;
}

/* Refused: status, message, nothing printed, the file's bytes unchanged. */
static void expect_refused(const char *path, ksa_status want, const char *needle)
{
    size_t n0, n1;
    char *before = slurp(path, &n0);
    ksa_status st;
    char *out = info_of(path, &st);
    if (st != want)
        fail_msg("%s: status %s, want %s; message: %s", path, ksa_status_name(st),
                 ksa_status_name(want), ksa_last_error());
    if (!strstr(ksa_last_error(), needle))
        fail_msg("message '%s' lacks '%s'", ksa_last_error(), needle);
    if (strncmp(ksa_last_error(), "checkpoint ", 11) &&
        strncmp(ksa_last_error(), "cannot open", 11))
        fail_msg("message '%s' does not start by naming the checkpoint", ksa_last_error());
    if (!strstr(ksa_last_error(), path))
        fail_msg("message '%s' does not name the file", ksa_last_error());
    assert_string_equal(out, "");
    char *after = slurp(path, &n1);
    assert_int_equal(n0, n1);
    assert_true(n0 == 0 || memcmp(before, after, n0) == 0);
    free(before);
    free(after);
    free(out);
}

/* ---- models and files --------------------------------------------------------------------- */
/* 2 layers over the byte vocabulary: layer 0 a summary layer with its own q/k/v (W = 2),
 * layer 1 a causal bypass layer; a summary embedding, an untied LM head. 12688 parameters:
 * embed and lm_head 257*16 each, summary embedding 16, layer 0 2472, layer 1 1960, norm 16. */
static void write_small(const char *path, ksa_model *m)
{
    ksa_model_config c;
    test_config_small(&c);
    if (ksa_model_init(m, &c) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    ksa_model_init_weights(m, 3);
    if (ksa_ckpt_write_model(path, &c, &m->params, 256) != KSA_OK)
        fail_msg("%s", ksa_last_error());
}

static void copy_file(const char *from, const char *to, size_t n_bytes)
{
    size_t n;
    char *buf = slurp(from, &n);
    assert_non_null(buf);
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n_bytes ? n_bytes : n, f), n_bytes ? n_bytes : n);
    fclose(f);
    free(buf);
}

static hid_t open_rw(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

static void put_attr(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(space >= 0 && a >= 0);
    assert_true(H5Awrite(a, mtype, v) >= 0);
    H5Aclose(a);
    H5Sclose(space);
}

static void put_int(hid_t loc, const char *name, long long v)
{
    put_attr(loc, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, &v);
}

static void put_double(hid_t loc, const char *name, double v)
{
    put_attr(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

static void put_str(hid_t loc, const char *name, const char *s)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    put_attr(loc, name, t, t, &s);
    H5Tclose(t);
}

/* A dataset of the given shape and type; data (float32 zeros) written only if asked. */
static void put_dataset(hid_t loc, const char *name, int ndim, size_t d0, size_t d1, hid_t type,
                        int write)
{
    hsize_t dims[2] = {d0, d1};
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    hid_t d = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (space < 0 || d < 0)
        fail_msg("cannot create dataset %s", name);
    if (write) {
        float *zeros = calloc(d0 * (ndim == 2 ? d1 : 1), sizeof *zeros);
        assert_non_null(zeros);
        assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros) >= 0);
        assert_int_equal(test_h5_write_checksum(d), 0); /* wrong in no other way */
        free(zeros);
    }
    H5Dclose(d);
    H5Sclose(space);
}

/* Files edited here are other tools' files: format_version 1, whose datasets need no
 * checksum (CHECKPOINT_FORMAT.md, Integrity). */
static void as_version_1(hid_t f)
{
    if (H5Aexists(f, "format_version") > 0) {
        assert_true(H5Adelete(f, "format_version") >= 0);
        put_int(f, "format_version", 1);
    }
}

static void replace_dataset(const char *path, const char *name, int ndim, size_t d0, size_t d1,
                            hid_t type)
{
    hid_t f = open_rw(path);
    as_version_1(f);
    assert_true(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    put_dataset(f, name, ndim, d0, d1, type, 1);
    H5Fclose(f);
}

static void delete_object(const char *path, const char *name)
{
    hid_t f = open_rw(path);
    if (H5Ldelete(f, name, H5P_DEFAULT) < 0)
        fail_msg("cannot delete %s", name);
    H5Fclose(f);
}

static void replace_int_attr(const char *path, const char *obj, const char *name, long long v)
{
    hid_t f = open_rw(path), o = H5Oopen(f, obj, H5P_DEFAULT);
    assert_true(o >= 0);
    if (H5Aexists(o, name) > 0)
        assert_true(H5Adelete(o, name) >= 0);
    put_int(o, name, v);
    H5Oclose(o);
    H5Fclose(f);
}

/* /optim and /train as CHECKPOINT_FORMAT.md and the training code lay them out. */
static void add_training_state(const char *path, const ksa_params *p)
{
    hid_t f = open_rw(path);
    as_version_1(f);
    hid_t g = H5Gcreate2(f, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(g >= 0);
    put_str(g, "type", "adamw");
    put_double(g, "beta1", 0.9);
    put_double(g, "beta2", 0.95);
    put_double(g, "eps", 1e-8);
    put_double(g, "weight_decay", 0.1);
    const char *moments[] = {"exp_avg", "exp_avg_sq"};
    for (size_t k = 0; k < 2; k++) {
        hid_t mg = H5Gcreate2(g, moments[k], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(mg >= 0);
        for (size_t i = 0; i < p->n; i++) {
            const ksa_param *e = &p->table[i];
            put_dataset(mg, e->name, e->ndim, e->shape[0], e->shape[1], H5T_IEEE_F32LE, 1);
        }
        H5Gclose(mg);
    }
    H5Gclose(g);

    g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(g >= 0);
    put_int(g, "step", 120);
    put_int(g, "tokens_seen", 61440);
    put_int(g, "seed", 7);
    put_int(g, "world_size", 2);
    put_str(g, "data", "/data/train.bin");
    put_str(g, "data_mix", "");
    put_str(g, "val_data", "/data/val.bin");
    put_str(g, "dtype", "");
    put_str(g, "lr_schedule", "cosine");
    put_str(g, "log", "/runs/a/log.jsonl");
    put_str(g, "out", "/runs/a");
    const char *ints[] = {"seq_len",      "global_batch", "micro_batch", "steps",
                          "warmup_steps", "decay_steps",  "eval_every",  "eval_batches",
                          "threads",      "save_every",   "keep"};
    const long long ivals[] = {64, 8, 2, 200, 10, 100, 50, 4, 2, 40, 3};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        put_int(g, ints[i], ivals[i]);
    const char *reals[] = {"lr",       "min_lr",     "weight_decay", "beta1",      "beta2",
                           "adam_eps", "clip_value", "clip_norm",    "peak_gflops"};
    const double rvals[] = {3e-4, 3e-5, 0.1, 0.9, 0.95, 1e-8, 0, 1, 0};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++)
        put_double(g, reals[i], rvals[i]);
    /* loader / RNG state the trainer may add: an array attribute and a scalar */
    hsize_t four = 4;
    unsigned long long rng[4] = {1, 2, 3, 18446744073709551615ull};
    hid_t space = H5Screate_simple(1, &four, NULL);
    hid_t a = H5Acreate2(g, "rng_state", H5T_STD_U64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_ULLONG, rng) >= 0);
    H5Aclose(a);
    H5Sclose(space);
    put_int(g, "loader_cursor", 960);
    H5Gclose(g);
    H5Fclose(f);
}

/* The address of the object header of `name` (metadata: no checksum in format v1 files). */
static haddr_t header_address(const char *path, const char *name)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    haddr_t addr;
#if H5_VERSION_GE(1, 12, 0)
    H5O_info2_t oi;
    assert_true(H5Oget_info_by_name3(f, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0);
    assert_true(H5VLnative_token_to_addr(f, oi.token, &addr) >= 0);
#else
    H5O_info_t oi;
    assert_true(H5Oget_info_by_name2(f, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0);
    addr = oi.addr;
#endif
    H5Fclose(f);
    return addr;
}

/* ---- tests ---------------------------------------------------------------------------------- */
static void a_model_checkpoint_shows_config_layers_parameters_and_tokenizer(void **state)
{
    (void)state;
    const char *path = in_dir("model.h5");
    ksa_model m;
    write_small(path, &m);
    char *out = inspect_ok(path);
    char head[600];
    snprintf(head, sizeof head, "# checkpoint %s (", path);
    expect_in(out, head);
    expect_in(out, "\nformat = \"ksa-checkpoint\"\nformat_version = 2\n");
    /* every /config key with the file's value, in the configuration table's order */
    expect_in(out, "# model configuration (/config)\nvocab_size = 257\nhidden_size = 16\n"
                   "num_hidden_layers = 2\nnum_attention_heads = 4\nnum_key_value_heads = 2\n"
                   "head_dim = 4\nintermediate_size = 24\nrope_theta = 10000.0\n"
                   "rms_norm_eps = 1e-06\nmax_position_embeddings = 131072\n"
                   "tie_word_embeddings = 0\nuse_summary_attention = 1\n"
                   "summary_chunk_size = 4\nsummary_token_num = 1\n"
                   "summary_sliding_chunk_num = 2\nsummary_layer_freq = \"[1,0]\"\n"
                   "summary_independent_parameters = 1\nsummary_independent_qkv = 1\n");
    expect_in(out, "summary_chunk_position_ids_type = \"origin\"\n");
    expect_in(out, "# summary_token_begin: absent\n"); /* not written: not used */
    expect_in(out, "\n# layers\nlayer 0: summary W=2\nlayer 1: causal bypass\n");
    expect_in(out, "\n# parameters: 12688 (0.013 M) in 29 tensors\n"
                   "model.embed_tokens.weight [257, 16] float32\n"
                   "summary_embedding.weight [1, 16] float32\n"
                   "model.layers.0.input_layernorm.weight [16] float32\n"
                   "model.layers.0.self_attn.q_proj.weight [16, 16] float32\n"
                   "model.layers.0.self_attn.k_proj.weight [8, 16] float32\n");
    expect_in(out, "\nmodel.layers.0.self_attn.v_proj_summary.weight [8, 16] float32\n");
    expect_in(out, "\nmodel.layers.1.mlp.down_proj.weight [16, 24] float32\n"
                   "model.norm.weight [16] float32\nlm_head.weight [257, 16] float32\n");
    /* every parameter of the model, once, in the model's order */
    const char *at = out;
    for (size_t i = 0; i < m.params.n; i++) {
        const ksa_param *e = &m.params.table[i];
        char line[200];
        if (e->ndim == 2)
            snprintf(line, sizeof line, "\n%s [%zu, %zu] float32\n", e->name, e->shape[0],
                     e->shape[1]);
        else
            snprintf(line, sizeof line, "\n%s [%zu] float32\n", e->name, e->shape[0]);
        const char *hit = strstr(at, line);
        if (!hit)
            fail_msg("no line '%s' after the previous parameter in\n%s", line + 1, out);
        at = hit + 1;
        assert_null(strstr(hit + 1, line)); /* once */
    }
    expect_in(out, "\n# tokenizer (/tokenizer)\ntype = \"byte\"\neot_id = 256\n");
    expect_in(out, "\n# optimizer: absent");
    expect_in(out, "\n# training state: absent");
    expect_not_in(out, "PROBLEM");
    free(out);
    ksa_model_free(&m);
    unlink(path);
}

static void files_of_other_tools_show_what_they_hold(void **state)
{
    (void)state;
    const char *path = in_dir("other.h5");
    ksa_model m;
    write_small(path, &m);
    delete_object(path, "/tokenizer");
    hid_t f = open_rw(path), g = H5Gopen2(f, "config", H5P_DEFAULT);
    assert_true(g >= 0);
    put_str(g, "torch_dtype", "float32");
    assert_true(H5Adelete(g, "summary_independent_qk_norm") >= 0);
    H5Gclose(g);
    H5Fclose(f);
    replace_dataset(path, "/params/model.norm.weight", 1, 16, 0, H5T_IEEE_F64LE);
    replace_dataset(path, "/params/lm_head.weight", 2, 257, 16, H5T_IEEE_F32BE);
    int saved = dup(2), null = open("/dev/null", O_WRONLY); /* the unknown-key warning */
    dup2(null, 2);
    char *out = inspect_ok(path);
    dup2(saved, 2);
    close(saved);
    close(null);
    expect_in(out, "\n# summary_independent_qk_norm: absent\n");
    expect_in(out, "\ntorch_dtype = \"float32\" # not a model configuration key: ignored\n");
    expect_in(out, "\nmodel.norm.weight [16] float64\n");
    expect_in(out, "\nlm_head.weight [257, 16] float32 big-endian\n");
    expect_in(out, "\n# tokenizer: absent (no /tokenizer): byte tokenizer assumed");
    free(out);
    ksa_model_free(&m);
    unlink(path);
}

static void a_training_checkpoint_shows_the_optimizer_and_training_state(void **state)
{
    (void)state;
    const char *path = in_dir("train.h5");
    ksa_model m;
    write_small(path, &m);
    add_training_state(path, &m.params);
    char *out = inspect_ok(path);
    expect_in(out, "\n# optimizer (/optim)\ntype = \"adamw\"\nbeta1 = 0.9\nbeta2 = 0.95\n"
                   "eps = 1e-08\nweight_decay = 0.1\n"
                   "moments: exp_avg and exp_avg_sq present for all 29 parameters, with their "
                   "shapes\n");
    expect_in(out, "\n# training state (/train)\nstep = 120\ntokens_seen = 61440\nseed = 7\n"
                   "world_size = 2\n# schedule\nlr_schedule = \"cosine\"\nlr = 0.0003\n"
                   "min_lr = 3e-05\nwarmup_steps = 10\ndecay_steps = 100\nsteps = 200\n"
                   "# data\ndata = \"/data/train.bin\"\ndata_mix = \"\"\n"
                   "val_data = \"/data/val.bin\"\n# other training keys and state\n"
                   "dtype = \"\"\nseq_len = 64\nglobal_batch = 8\nmicro_batch = 2\n");
    expect_in(out, "\nclip_norm = 1.0\n");
    expect_in(out, "\nout = \"/runs/a\"\n");
    expect_in(out, "\nkeep = 3\n");
    expect_in(out, "\nloader_cursor = 960\nrng_state = [1, 2, 3, 18446744073709551615]\n");
    expect_in(out, "# parameters: 12688 "); /* the model part is there as well */
    expect_not_in(out, "PROBLEM");
    expect_not_in(out, "# optimizer: absent");
    expect_not_in(out, "# training state: absent");
    free(out);
    ksa_model_free(&m);
    unlink(path);
}

static void an_incomplete_training_state_is_shown_then_refused(void **state)
{
    (void)state;
    const char *path = in_dir("broken_train.h5");
    ksa_model m;
    write_small(path, &m);
    add_training_state(path, &m.params);
    replace_dataset(path, "/optim/exp_avg/lm_head.weight", 2, 16, 257, H5T_IEEE_F32LE);
    delete_object(path, "/optim/exp_avg_sq/model.norm.weight");
    hid_t f = open_rw(path), g = H5Gopen2(f, "optim/exp_avg", H5P_DEFAULT);
    put_dataset(g, "bogus.weight", 1, 3, 0, H5T_IEEE_F32LE, 1);
    H5Gclose(g);
    g = H5Gopen2(f, "train", H5P_DEFAULT);
    assert_true(H5Adelete(g, "step") >= 0 && H5Adelete(g, "data") >= 0);
    put_str(g, "data", "relative/train.bin");
    H5Gclose(g);
    H5Fclose(f);

    ksa_status st;
    char *raw = info_of(path, &st), *out = squeeze(raw);
    assert_int_equal(st, KSA_EFORMAT);
    char want[800];
    snprintf(want, sizeof want,
             "checkpoint %s: /optim/exp_avg/lm_head.weight has shape [16, 257], the parameter "
             "has [257, 16] (and 4 more problems, listed above): the training state is "
             "incomplete",
             path);
    assert_string_equal(ksa_last_error(), want);
    expect_in(out, "moments: exp_avg for 28 of 29 parameters, exp_avg_sq for 28 of 29\n");
    expect_in(out, "\n# step: absent\ntokens_seen = 61440\n");
    expect_in(out, "\n# problems: this run cannot be resumed from this file\n"
                   "PROBLEM: /optim/exp_avg/lm_head.weight has shape [16, 257], the parameter "
                   "has [257, 16]\n"
                   "PROBLEM: /optim/exp_avg/bogus.weight is not a parameter of the "
                   "configuration\n"
                   "PROBLEM: /optim/exp_avg_sq/model.norm.weight is missing\n"
                   "PROBLEM: /train lacks the attribute 'step'\n"
                   "PROBLEM: /train data = \"relative/train.bin\" is not an absolute path\n");
    free(raw);
    free(out);

    /* /optim without its moments and without /train; a foreign optimizer */
    delete_object(path, "/train");
    delete_object(path, "/optim/exp_avg_sq");
    f = open_rw(path);
    g = H5Gopen2(f, "optim", H5P_DEFAULT);
    assert_true(H5Adelete(g, "type") >= 0);
    put_str(g, "type", "sgd");
    H5Gclose(g);
    H5Fclose(f);
    raw = info_of(path, &st);
    assert_int_equal(st, KSA_EFORMAT);
    expect_in(ksa_last_error(), ": /optim type is \"sgd\", this program knows only \"adamw\" "
                                "(and 4 more problems");
    expect_in(raw, "PROBLEM: no /optim/exp_avg_sq group: the optimizer state has no exp_avg_sq "
                   "moments\n");
    expect_in(raw, "PROBLEM: /optim is present but /train is not: the run cannot be resumed\n");
    expect_in(raw, "# training state: absent");
    free(raw);
    ksa_model_free(&m);
    unlink(path);
}

static void inspection_reads_metadata_only(void **state)
{
    (void)state;
    /* the released 1.9B model, every parameter declared at its full shape but never written:
     * HDF5 allocates no storage, so the file is small and reading values would be slow    */
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    if (ksa_model_config_load(&c, "configs/ksa-1b9-hybrid.conf") != KSA_OK)
        fail_msg("%s", ksa_last_error());
    ksa_model m;
    if (ksa_model_declare(&m, &c) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    const char *path = in_dir("big.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    put_str(f, "format", "ksa-checkpoint");
    put_int(f, "format_version", 1);
    hid_t g = H5Gcreate2(f, "config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    size_t n;
    const ksa_config_key *keys = ksa_model_config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        const char *field = (const char *)&c + keys[i].offset;
        long v;
        switch (keys[i].kind) {
        case KSA_KEY_INT:
        case KSA_KEY_BOOL:
            v = *(const long *)field;
            if (v < 0 && !strcmp(keys[i].name, "summary_independent_qkv"))
                v = c.summary_independent_parameters;
            if (v >= 0)
                put_int(g, keys[i].name, v);
            break;
        case KSA_KEY_FLOAT:
            put_double(g, keys[i].name, *(const double *)field);
            break;
        case KSA_KEY_STRING:
            put_str(g, keys[i].name, field);
            break;
        }
    }
    H5Gclose(g);
    g = H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    for (size_t i = 0; i < m.params.n; i++) {
        const ksa_param *e = &m.params.table[i];
        put_dataset(g, e->name, e->ndim, e->shape[0], e->shape[1], H5T_IEEE_F32LE, 0);
    }
    H5Gclose(g);
    H5Fclose(f);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size < (1 << 20)); /* 2.2 billion parameters, no values */

    double t0 = ksa_now();
    char *out = inspect_ok(path);
    double seconds = ksa_now() - t0;
    expect_in(out, "\n# parameters: 2233051136 (2233.051 M) in 340 tensors\n");
    expect_in(out, "\nmodel.embed_tokens.weight [151936, 2048] float32\n");
    expect_in(out, "\nlayer 23: summary W=1024\n");
    /* reading the values would move 8.9 GB: seconds at least, however fast the disk */
    print_message("inspected 2.23 B parameters in %.3f s\n", seconds);
    if (seconds > 1.0)
        fail_msg("inspecting took %.2f s", seconds);
    free(out);
    ksa_model_free(&m);
    unlink(path);
}

static void bad_files_are_refused_naming_the_problem(void **state)
{
    (void)state;
    const char *good = in_dir("good.h5"), *bad = in_dir("bad.h5");
    ksa_model m;
    write_small(good, &m);
    char want[800];

    snprintf(want, sizeof want, "cannot open checkpoint %s: No such file or directory",
             in_dir("missing.h5"));
    expect_refused(in_dir("missing.h5"), KSA_EIO, want);

    FILE *t = fopen(bad, "w");
    assert_non_null(t);
    fputs("hidden_size = 8\n", t);
    fclose(t);
    snprintf(want, sizeof want, "checkpoint %s is not an HDF5 file", bad);
    expect_refused(bad, KSA_EFORMAT, want);

    /* the first half of a real checkpoint */
    size_t size;
    free(slurp(good, &size));
    copy_file(good, bad, size / 2);
    expect_refused(bad, KSA_EFORMAT, "damaged: cannot open the file (HDF5: truncated file");

    /* a block in the middle overwritten: the object header of the parameter nearest the
     * middle of the file (inspection reads no values: metadata damage is what it sees)   */
    const char *victim = NULL;
    haddr_t best = 0, mid = size / 2;
    char name[160];
    for (size_t i = 0; i < m.params.n; i++) {
        snprintf(name, sizeof name, "/params/%s", m.params.table[i].name);
        haddr_t a = header_address(good, name);
        if (!victim || (a > mid ? a - mid : mid - a) < (best > mid ? best - mid : mid - best))
            victim = m.params.table[i].name, best = a;
    }
    copy_file(good, bad, 0);
    int fd = open(bad, O_WRONLY);
    char zeros[64] = {0};
    assert_int_equal(pwrite(fd, zeros, sizeof zeros, (off_t)best), (ssize_t)sizeof zeros);
    close(fd);
    snprintf(want, sizeof want, "checkpoint %s: damaged: cannot open /params/%s (HDF5: ", bad,
             victim);
    expect_refused(bad, KSA_EFORMAT, want);

    hid_t f = H5Fcreate(bad, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    put_dataset(f, "x", 1, 3, 0, H5T_IEEE_F32LE, 1);
    H5Fclose(f);
    expect_refused(bad, KSA_EFORMAT, "no root attribute 'format': not a ksa checkpoint");

    copy_file(good, bad, 0);
    replace_int_attr(bad, "/", "format_version", 4);
    expect_refused(bad, KSA_EFORMAT, "format_version 4 is newer than this program reads (3)");
    replace_int_attr(bad, "/", "format_version", 0);
    expect_refused(bad, KSA_EFORMAT, "format_version 0 is not a valid version");

    copy_file(good, bad, 0);
    replace_int_attr(bad, "/config", "head_dim", 5);
    expect_refused(bad, KSA_EFORMAT, "/config is not a valid model: head_dim = 5 must be even");

    copy_file(good, bad, 0);
    delete_object(bad, "/params");
    snprintf(want, sizeof want, "checkpoint %s: no /params group", bad);
    expect_refused(bad, KSA_EFORMAT, want);

    copy_file(good, bad, 0);
    replace_dataset(bad, "/params/model.layers.1.mlp.up_proj.weight", 2, 16, 24, H5T_IEEE_F32LE);
    snprintf(want, sizeof want,
             "checkpoint %s: /params/model.layers.1.mlp.up_proj.weight has shape [16, 24], the "
             "configuration needs [24, 16]",
             bad);
    expect_refused(bad, KSA_EFORMAT, want);

    copy_file(good, bad, 0);
    replace_dataset(bad, "/params/model.norm.weight", 2, 16, 1, H5T_IEEE_F32LE);
    expect_refused(bad, KSA_EFORMAT,
                   "/params/model.norm.weight has shape [16, 1], the configuration needs [16]");

    copy_file(good, bad, 0);
    delete_object(bad, "/params/lm_head.weight");
    snprintf(want, sizeof want,
             "checkpoint %s: /params/lm_head.weight is missing (the configuration needs "
             "[257, 16])",
             bad);
    expect_refused(bad, KSA_EFORMAT, want);

    copy_file(good, bad, 0);
    f = open_rw(bad);
    put_dataset(f, "/params/extra.weight", 1, 4, 0, H5T_IEEE_F32LE, 1);
    H5Fclose(f);
    expect_refused(bad, KSA_EFORMAT,
                   "/params/extra.weight is not a parameter of the configuration");

    copy_file(good, bad, 0);
    replace_dataset(bad, "/params/model.norm.weight", 1, 16, 0, H5T_STD_I32LE);
    expect_refused(bad, KSA_EFORMAT,
                   "/params/model.norm.weight holds int32, not floating-point numbers");

    /* a float of 64 bytes (a damaged size: HDF5 would convert it through buffers that large) */
    hid_t wide = H5Tcopy(H5T_IEEE_F64LE);
    assert_true(wide >= 0 && H5Tset_size(wide, 64) >= 0);
    copy_file(good, bad, 0);
    replace_dataset(bad, "/params/model.norm.weight", 1, 16, 0, wide);
    H5Tclose(wide);
    expect_refused(bad, KSA_EFORMAT,
                   "/params/model.norm.weight holds float512, not floating-point numbers of 2, "
                   "4 or 8 bytes");

    copy_file(good, bad, 0);
    delete_object(bad, "/params/model.norm.weight");
    f = open_rw(bad);
    hid_t g = H5Gcreate2(f, "/params/model.norm.weight", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(g >= 0);
    H5Gclose(g);
    H5Fclose(f);
    expect_refused(bad, KSA_EFORMAT, "/params/model.norm.weight is not a dataset");

    /* the untouched original still inspects */
    free(inspect_ok(good));
    ksa_model_free(&m);
    unlink(good);
    unlink(bad);
}

/* Float attributes of any value print: 1e30, infinities and NaN are no integers to convert
 * (converting them to long long was undefined behaviour, caught by UBSan in
 * tests/fuzz/fuzz_ckpt.c; only a sanitizer build of this test fails without the check). */
static void float_attributes_of_any_value_print(void **state)
{
    (void)state;
    const char *path = in_dir("floats.h5");
    ksa_model m;
    write_small(path, &m);
    hid_t f = open_rw(path), g = H5Gopen2(f, "tokenizer", H5P_DEFAULT);
    assert_true(g >= 0);
    put_double(g, "big", 3.4e30);
    put_double(g, "minus_big", -1e300);
    put_double(g, "inf", INFINITY);
    put_double(g, "nan", NAN);
    put_double(g, "integral", 12.0);
    H5Gclose(g);
    H5Fclose(f);
    char *out = inspect_ok(path);
    expect_in(out, "\nbig = 3.4e+30\n");
    expect_in(out, "\nminus_big = -1e+300\n");
    expect_in(out, "\ninf = inf\n");
    expect_in(out, "\nnan = nan\n");
    expect_in(out, "\nintegral = 12.0\n");
    free(out);
    ksa_model_free(&m);
    unlink(path);
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the tests probe missing objects on purpose */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_model_checkpoint_shows_config_layers_parameters_and_tokenizer),
        cmocka_unit_test(files_of_other_tools_show_what_they_hold),
        cmocka_unit_test(a_training_checkpoint_shows_the_optimizer_and_training_state),
        cmocka_unit_test(an_incomplete_training_state_is_shown_then_refused),
        cmocka_unit_test(inspection_reads_metadata_only),
        cmocka_unit_test(bad_files_are_refused_naming_the_problem),
        cmocka_unit_test(float_attributes_of_any_value_print),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
