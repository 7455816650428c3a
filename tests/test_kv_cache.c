/* test_kv_cache.c - the decoding cache's rows hold exactly the keys KSA_SPEC §3 lets each
 * query see, for every query in decode order, on sequences where the ring wraps many times.
 *
 * The reference is written here from the spec, not from kv_cache.c: the expanded sequence
 * of §2.2 (summaries after every complete chunk only), the predicate visible(q, k) of §3.1
 * evaluated on it, and a shadow copy of the row buffer that records what the test itself
 * wrote into each row (the appends, the summary rows, the flush copies). A query passes when
 * the logical tokens in the rows it reads, taken from the shadow, are exactly the visible set
 * with no duplicate, and the cache's own account of those rows agrees with the shadow.     */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/kv_cache.h"

/* A logical token as one integer: text t_t -> 2t, summary row r = c*S + j -> 2r + 1. */
static long text_code(size_t t)
{
    return 2 * (long)t;
}
static long sum_code(size_t chunk, size_t j, size_t S)
{
    return 2 * (long)(chunk * S + j) + 1;
}

static long token_code(ksa_kv_token tok, size_t S)
{
    if (tok.kind == KSA_KV_TEXT)
        return text_code(tok.t);
    if (tok.kind == KSA_KV_SUMMARY)
        return sum_code(tok.chunk, tok.j, S);
    return -1;
}

/* ---- the reference: §2.2 layout and the §3.1 predicate --------------------------------- */

typedef struct {
    int is_sum;
    long chunk; /* from the layout: t_i in chunk i div C, s_c.j in chunk c */
    long code;
} ref_token;

/* The expanded sequence holding text t_0 ... t_{T-1} and the summaries of chunks 0 ... nc-1
 * (only j <= last_j for chunk nc-1 when last_j >= 0): returns its length. */
static size_t ref_expand(ref_token *seq, size_t T, size_t C, size_t S, size_t nc, long last_j)
{
    size_t n = 0;
    for (size_t i = 0; i < T; i++) {
        seq[n++] = (ref_token){0, (long)(i / C), text_code(i)};
        size_t c = i / C;
        if (i % C == C - 1 && c < nc)
            for (size_t j = 0; j < S; j++)
                if (c + 1 < nc || last_j < 0 || (long)j <= last_j)
                    seq[n++] = (ref_token){1, (long)c, sum_code(c, j, S)};
    }
    return n;
}

/* KSA_SPEC §3.1, literally (q, k: expanded indices). */
static int ref_visible(const ref_token *seq, size_t q, size_t k, long W)
{
    if (seq[q].is_sum)
        return seq[k].chunk == seq[q].chunk && k <= q;
    long d = seq[q].chunk - seq[k].chunk;
    return k <= q && ((!seq[k].is_sum && d <= W) || (seq[k].is_sum && d > W));
}

/* want[code] = 1 for every token the last element of seq (the query) sees. */
static void ref_visible_set(unsigned char *want, size_t ncodes, const ref_token *seq, size_t n,
                            long W)
{
    memset(want, 0, ncodes);
    for (size_t k = 0; k < n; k++)
        if (ref_visible(seq, n - 1, k, W))
            want[seq[k].code] = 1;
}

/* ---- the harness ----------------------------------------------------------------------- */

typedef struct {
    size_t C, S, W, T_max;
    ksa_kv_cache c;
    long *shadow; /* [rows_for(T_max)]: code last written to each row, -1 never   */
    size_t rows;  /* rows_for(T_max)                                              */
    ref_token *seq;
    unsigned char *want, *got;
    size_t ncodes;
    size_t queries; /* checked so far */
} harness;

static void harness_init(harness *h, ksa_kv_kind kind, size_t C, size_t S, size_t W, size_t T_max)
{
    memset(h, 0, sizeof *h);
    h->C = C;
    h->S = S;
    /* a causal layer is the §3 rule with no summary rows and an unbounded window (§4.3) */
    h->W = kind == KSA_KV_LAYER_CAUSAL ? (size_t)1 << 40 : W;
    h->T_max = T_max;
    assert_int_equal(ksa_kv_cache_init(&h->c, kind, C, S, W, T_max), KSA_OK);
    h->rows = ksa_kv_cache_rows_for(&h->c, T_max);
    h->shadow = malloc((h->rows + 1) * sizeof *h->shadow);
    for (size_t r = 0; r < h->rows; r++)
        h->shadow[r] = -1;
    h->seq = malloc((T_max + (T_max / C + 1) * S + 1) * sizeof *h->seq);
    h->ncodes = 2 * (T_max + (T_max / C + 1) * S) + 2;
    h->want = malloc(h->ncodes);
    h->got = malloc(h->ncodes);
}

static void harness_free(harness *h)
{
    free(h->shadow);
    free(h->seq);
    free(h->want);
    free(h->got);
}

static void write_row(harness *h, size_t row, long code, size_t T_now)
{
    /* every write lands inside the rows the cache asks for at its current length */
    assert_true(row < ksa_kv_cache_rows_for(&h->c, T_now));
    h->shadow[row] = code;
}

/* The rows a query reads hold, by the shadow, exactly the visible set of the last token of
 * seq, each once; the cache's own account of each row (row_token) agrees with the shadow. */
static void check_reads(harness *h, ksa_kv_range r, const ref_token *seq, size_t n,
                        const char *what)
{
    ref_visible_set(h->want, h->ncodes, seq, n, h->W > 1000000000 ? 1000000000 : (long)h->W);
    memset(h->got, 0, h->ncodes);
    if (!(r.begin <= r.end && r.end <= h->rows))
        fail_msg("%s: range [%zu, %zu) outside the %zu rows", what, r.begin, r.end, h->rows);
    for (size_t row = r.begin; row < r.end; row++) {
        long code = h->shadow[row];
        if (code < 0)
            fail_msg("%s: row %zu read but never written", what, row);
        if (h->got[code])
            fail_msg("%s: token code %ld read twice (row %zu)", what, code, row);
        h->got[code] = 1;
        if (token_code(ksa_kv_cache_row_token(&h->c, row), h->S) != code)
            fail_msg("%s: row %zu holds code %ld, the cache says %ld", what, row, code,
                     token_code(ksa_kv_cache_row_token(&h->c, row), h->S));
    }
    for (size_t code = 0; code < h->ncodes; code++)
        if (h->got[code] != h->want[code])
            fail_msg("%s: token code %zu is %s by the cache but %s by KSA_SPEC §3", what, code,
                     h->got[code] ? "read" : "not read", h->want[code] ? "visible" : "invisible");
    h->queries++;
}

/* Between steps: every token the cache says it holds is where the shadow put it, and the
 * rows holding something number exactly the live entries of KSA_SPEC §8.7. */
static void check_state(harness *h)
{
    const ksa_kv_cache *c = &h->c;
    size_t T = c->T, held = 0;
    size_t rows_now = ksa_kv_cache_rows_for(c, T);
    for (size_t t = 0; t < T; t++) {
        size_t row = ksa_kv_cache_row_of_text(c, t);
        if (row != KSA_KV_NO_ROW)
            assert_int_equal(h->shadow[row], text_code(t));
    }
    if (c->kind == KSA_KV_LAYER_SUMMARY)
        for (size_t k = 0; k < T / h->C; k++)
            for (size_t j = 0; j < h->S; j++) {
                size_t row = ksa_kv_cache_row_of_summary(c, k, j);
                assert_true(row != KSA_KV_NO_ROW); /* summaries are never evicted */
                assert_int_equal(h->shadow[row], sum_code(k, j, h->S));
            }
    for (size_t row = 0; row < h->rows; row++) {
        ksa_kv_token tok = ksa_kv_cache_row_token(c, row);
        if (tok.kind == KSA_KV_NONE)
            continue;
        assert_true(row < rows_now);
        assert_int_equal(token_code(tok, h->S), h->shadow[row]);
        held++;
    }
    size_t n = T / h->C;
    size_t live = c->kind == KSA_KV_LAYER_CAUSAL
                      ? T
                      : T % h->C + h->C * (n < h->W ? n : h->W) + h->S * n; /* §8.7 */
    assert_int_equal(ksa_kv_cache_live_rows(c), live);
    assert_int_equal(held, live);
    size_t ring = h->W < h->T_max / h->C ? h->W : h->T_max / h->C;
    if (c->kind == KSA_KV_LAYER_SUMMARY)
        assert_int_equal(rows_now, h->S + h->C + ring * h->C + n * h->S);
    else
        assert_int_equal(rows_now, T);
}

/* One decode step: append t_T, check its query; at a chunk boundary write the summaries,
 * check every summary query, flush and apply the copies. */
static void decode_step(harness *h)
{
    ksa_kv_cache *c = &h->c;
    size_t T = c->T, C = h->C, S = h->S;
    char what[128];
    ksa_kv_append a = ksa_kv_cache_append_text(c);
    assert_int_equal(a.t, T);
    write_row(h, a.row, text_code(T), T + 1);
    size_t nc = c->kind == KSA_KV_LAYER_SUMMARY ? T / C : 0; /* complete chunks before t_T */
    size_t n = ref_expand(h->seq, T + 1, C, S, nc, -1);
    snprintf(what, sizeof what, "C=%zu S=%zu W=%zu text query t%zu", C, S, h->W, T);
    if (c->kind == KSA_KV_LAYER_CAUSAL) {
        n = ref_expand(h->seq, T + 1, C, S, 0, -1);
        check_reads(h, ksa_kv_cache_text_reads(c), h->seq, n, what);
        assert_false(a.completes_chunk);
        return;
    }
    check_reads(h, ksa_kv_cache_text_reads(c), h->seq, n, what);
    assert_int_equal(a.chunk, T / C);
    assert_int_equal(a.offset, T % C);
    assert_int_equal(a.completes_chunk, T % C == C - 1);
    if (!a.completes_chunk)
        return;
    size_t chunk = T / C;
    for (size_t j = 0; j < S; j++)
        write_row(h, ksa_kv_cache_summary_row(c, j), sum_code(chunk, j, S), T + 1);
    for (size_t j = 0; j < S; j++) {
        n = ref_expand(h->seq, T + 1, C, S, chunk + 1, (long)j);
        snprintf(what, sizeof what, "C=%zu S=%zu W=%zu summary query s%zu.%zu", C, S, h->W, chunk,
                 j);
        check_reads(h, ksa_kv_cache_summary_reads(c, j), h->seq, n, what);
    }
    ksa_kv_copy cp[2];
    size_t ncp = ksa_kv_cache_flush(c, cp);
    /* the chunk's text into the ring (unless W = 0), its summaries into their region */
    assert_int_equal(ncp, (ksa_kv_cache_row_of_text(c, T) != KSA_KV_NO_ROW) + (S > 0));
    for (size_t i = 0; i < ncp; i++) {
        /* source and destination do not overlap, and both lie in the rows now needed */
        assert_true(cp[i].src + cp[i].n <= cp[i].dst || cp[i].dst + cp[i].n <= cp[i].src);
        for (size_t r = 0; r < cp[i].n; r++)
            write_row(h, cp[i].dst + r, h->shadow[cp[i].src + r], T + 1);
    }
}

/* ---- tests ------------------------------------------------------------------------------ */

static const size_t Cs[] = {1, 2, 3, 4, 5, 8};
static const size_t Ss[] = {0, 1, 2, 3}; /* 0: a text-only window (sliding chunks) */
static const size_t Ws[] = {0, 1, 2, 3, 5, 40, (size_t)1 << 40};

static size_t sequence_length(size_t C, size_t W)
{
    /* past several wraps of the ring (when it has one), with a partial tail chunk */
    size_t wraps = W < 1000 ? 4 * C * (W + 1) : 0;
    size_t T = wraps > 200 ? wraps : 200;
    return (T > 420 ? 420 : T) + C / 2;
}

static void every_query_reads_exactly_its_visible_keys(void **state)
{
    (void)state;
    size_t total = 0;
    for (size_t ic = 0; ic < sizeof Cs / sizeof Cs[0]; ic++)
        for (size_t is = 0; is < sizeof Ss / sizeof Ss[0]; is++)
            for (size_t iw = 0; iw < sizeof Ws / sizeof Ws[0]; iw++) {
                size_t C = Cs[ic], S = Ss[is], W = Ws[iw];
                size_t T = sequence_length(C, W);
                harness h;
                harness_init(&h, KSA_KV_LAYER_SUMMARY, C, S, W, T);
                check_state(&h);
                while (h.c.T < T) {
                    decode_step(&h);
                    check_state(&h);
                }
                total += h.queries;
                harness_free(&h);
            }
    print_message("%zu queries checked\n", total);
    assert_true(total > 40000);
}

/* A cache sized for more tokens than are decoded: the ring has all W chunks (W*C may exceed
 * the context by far), reads are the same. */
static void a_larger_capacity_changes_no_read(void **state)
{
    (void)state;
    for (size_t iw = 0; iw < sizeof Ws / sizeof Ws[0]; iw++) {
        size_t C = 3, S = 2, W = Ws[iw], T = 100;
        harness h;
        harness_init(&h, KSA_KV_LAYER_SUMMARY, C, S, W, 1000);
        while (h.c.T < T) {
            decode_step(&h);
            check_state(&h);
        }
        harness_free(&h);
    }
}

/* Prefill then decode: fill(T0) puts the cache in the state of T0 decode steps (the same row
 * for every token, the same read ranges), and decoding goes on correctly from there. */
static void prefill_state_equals_decoded_state(void **state)
{
    (void)state;
    const size_t prompts[] = {0, 1, 2, 5, 6, 7, 23, 24, 25, 61};
    for (size_t ic = 0; ic < sizeof Cs / sizeof Cs[0]; ic++)
        for (size_t is = 0; is < sizeof Ss / sizeof Ss[0]; is++)
            for (size_t iw = 0; iw < sizeof Ws / sizeof Ws[0]; iw++)
                for (size_t ip = 0; ip < sizeof prompts / sizeof prompts[0]; ip++) {
                    size_t C = Cs[ic], S = Ss[is], W = Ws[iw], T0 = prompts[ip], T = T0 + 40;
                    harness dec, pre;
                    harness_init(&dec, KSA_KV_LAYER_SUMMARY, C, S, W, T);
                    harness_init(&pre, KSA_KV_LAYER_SUMMARY, C, S, W, T);
                    while (dec.c.T < T0)
                        decode_step(&dec);
                    ksa_kv_cache_fill(&pre.c, T0);
                    /* the prefill copies each kept token to its row */
                    for (size_t t = 0; t < T0; t++) {
                        size_t row = ksa_kv_cache_row_of_text(&pre.c, t);
                        assert_int_equal(row, ksa_kv_cache_row_of_text(&dec.c, t));
                        if (row != KSA_KV_NO_ROW)
                            pre.shadow[row] = text_code(t);
                    }
                    for (size_t k = 0; k <= T0 / C; k++)
                        for (size_t j = 0; j < S; j++) {
                            size_t row = ksa_kv_cache_row_of_summary(&pre.c, k, j);
                            assert_int_equal(row, ksa_kv_cache_row_of_summary(&dec.c, k, j));
                            if (row != KSA_KV_NO_ROW)
                                pre.shadow[row] = sum_code(k, j, S);
                        }
                    for (size_t r = 0; r < pre.rows; r++)
                        assert_int_equal(token_code(ksa_kv_cache_row_token(&pre.c, r), S),
                                         token_code(ksa_kv_cache_row_token(&dec.c, r), S));
                    check_state(&pre);
                    while (pre.c.T < T) {
                        decode_step(&pre);
                        check_state(&pre);
                    }
                    harness_free(&dec);
                    harness_free(&pre);
                }
}

/* KSA_SPEC §8.5: C = 2, S = 1, W = 2, prompt of 5 tokens. */
static void the_spec_trace_reads_the_spec_slices(void **state)
{
    (void)state;
    ksa_kv_cache c;
    assert_int_equal(ksa_kv_cache_init(&c, KSA_KV_LAYER_SUMMARY, 2, 1, 2, 16), KSA_OK);
    ksa_kv_cache_fill(&c, 5);
    assert_int_equal(ksa_kv_cache_row_of_text(&c, 4), 2); /* .  .  t4 | ring | s0 s1 */
    assert_int_equal(ksa_kv_cache_row_of_summary(&c, 0, 0), 7);
    assert_int_equal(ksa_kv_cache_row_of_summary(&c, 1, 0), 8);
    ksa_kv_append a = ksa_kv_cache_append_text(&c); /* t5 */
    assert_int_equal(a.row, 1);
    assert_true(a.completes_chunk);
    ksa_kv_range r = ksa_kv_cache_text_reads(&c);
    assert_true(r.begin == 1 && r.end == 7);
    assert_int_equal(ksa_kv_cache_summary_row(&c, 0), 0);
    r = ksa_kv_cache_summary_reads(&c, 0);
    assert_true(r.begin == 0 && r.end == 3);
    ksa_kv_copy cp[2];
    assert_int_equal(ksa_kv_cache_flush(&c, cp), 2);
    assert_true(cp[0].src == 1 && cp[0].dst == 3 && cp[0].n == 2); /* chunk 0 evicted */
    assert_true(cp[1].src == 0 && cp[1].dst == 9 && cp[1].n == 1); /* s2 appended */
    assert_int_equal(ksa_kv_cache_row_of_text(&c, 0), KSA_KV_NO_ROW);
    a = ksa_kv_cache_append_text(&c); /* t6 */
    assert_int_equal(a.row, 2);
    r = ksa_kv_cache_text_reads(&c);
    assert_true(r.begin == 2 && r.end == 8); /* t6, t5 t4, t2 t3, s0 */
    assert_int_equal(ksa_kv_cache_row_token(&c, 7).kind, KSA_KV_SUMMARY);
    assert_int_equal(ksa_kv_cache_row_token(&c, 7).chunk, 0);
}

static void a_causal_layer_is_append_only_text(void **state)
{
    (void)state;
    harness h;
    harness_init(&h, KSA_KV_LAYER_CAUSAL, 4, 2, 1, 300);
    while (h.c.T < 300) {
        size_t T = h.c.T;
        decode_step(&h);
        assert_int_equal(h.shadow[T], text_code(T)); /* row T, never moved */
        check_state(&h);
    }
    assert_int_equal(ksa_kv_cache_rows_for(&h.c, 300), 300);
    harness_free(&h);
}

static void buffers_grow_geometrically_up_to_the_capacity(void **state)
{
    (void)state;
    ksa_kv_cache c;
    assert_int_equal(ksa_kv_cache_init(&c, KSA_KV_LAYER_SUMMARY, 4, 1, 2, 1000), KSA_OK);
    size_t cap = ksa_kv_cache_rows_for(&c, 1000);
    assert_int_equal(cap, 1 + 4 + 8 + 250);
    size_t have = 0, grows = 0;
    for (size_t t = 0; t < 1000; t++) {
        size_t next = ksa_kv_cache_grow_rows(&c, have);
        assert_true(next >= ksa_kv_cache_rows_for(&c, t + 1));
        assert_true(next <= cap);
        if (next != have) {
            assert_true(next == cap || next >= 2 * have);
            grows++;
        }
        have = next;
        ksa_kv_append a = ksa_kv_cache_append_text(&c);
        assert_true(a.row < have);
        if (a.completes_chunk) {
            ksa_kv_copy cp[2];
            size_t n = ksa_kv_cache_flush(&c, cp);
            for (size_t i = 0; i < n; i++)
                assert_true(cp[i].dst + cp[i].n <= have);
        }
    }
    assert_true(grows <= 6); /* 14 (first step) -> 28 -> ... -> 263: doubling, not +1 */
    assert_int_equal(have, cap);
}

static void bad_dimensions_are_refused_by_name(void **state)
{
    (void)state;
    ksa_kv_cache c;
    assert_int_equal(ksa_kv_cache_init(&c, KSA_KV_LAYER_SUMMARY, 0, 1, 1, 10), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "summary_chunk_size"));
    /* S = 0 is a text-only window, W = 0 an empty ring */
    assert_int_equal(ksa_kv_cache_init(&c, KSA_KV_LAYER_SUMMARY, 8, 0, 0, 10), KSA_OK);
    assert_int_equal(
        ksa_kv_cache_init(&c, KSA_KV_LAYER_SUMMARY, 1, (size_t)1 << 40, 1, (size_t)1 << 40),
        KSA_EINVAL);
    assert_int_equal(ksa_kv_cache_init(&c, KSA_KV_LAYER_CAUSAL, 0, 0, 0, 10), KSA_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_query_reads_exactly_its_visible_keys),
        cmocka_unit_test(a_larger_capacity_changes_no_read),
        cmocka_unit_test(prefill_state_equals_decoded_state),
        cmocka_unit_test(the_spec_trace_reads_the_spec_slices),
        cmocka_unit_test(a_causal_layer_is_append_only_text),
        cmocka_unit_test(buffers_grow_geometrically_up_to_the_capacity),
        cmocka_unit_test(bad_dimensions_are_refused_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
