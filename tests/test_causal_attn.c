/* test_causal_attn.c - tiled causal attention against the dense reference of attncheck.h
 * (causal attention is its case C = 1, S = 0, W >= T): forward and gradients (the analytic
 * backward of the reference, itself checked against its own central differences), GQA,
 * lengths that are not multiples of the tile sizes, accumulation and NULL gradients,
 * determinism, the tape op, and the summary kernel whose window covers every chunk; in the
 * float64 build also central differences of the kernel.                                  */
#include "attncheck.h"

#include <stdlib.h>

#include "model/causal_attn.h"
#include "model/summary_attn.h"

static void reference_backward_matches_its_finite_differences(void **state)
{
    (void)state;
    attn_case ac = attn_causal(2, 6, 2, 1, 4);
    attn_check_reference_differences(&ac, 2);
}

/* Lengths around the kernel's tile sizes (128 query rows, 256 keys), GQA 4/4, 4/2, 4/1,
 * head_dim and nseq cycling so that each value meets every length and head layout.       */
static void forward_and_gradients_match_dense_causal_reference(void **state)
{
    (void)state;
    static const size_t Ts[] = {1, 2, 7, 127, 128, 129, 255, 257, 300, 520};
    static const size_t heads[3][2] = {{4, 4}, {4, 2}, {4, 1}}, dhs[] = {8, 12, 16, 64};
    uint64_t seed = 10;
    for (size_t it = 0; it < sizeof Ts / sizeof Ts[0]; it++)
        for (size_t ih = 0; ih < 3; ih++)
            for (size_t id = 0; id < 4; id += 1 + (Ts[it] > 100)) {
                attn_case ac = attn_causal(1 + (it + ih + id) % 2, Ts[it], heads[ih][0],
                                           heads[ih][1], dhs[(id + ih) % 4]);
                attn_check_against_reference(&ac, seed++);
            }
}

/* KSA_SPEC §3.1: with W >= the number of chunks a summary layer is plain causal attention
 * over the text (summaries are never visible to text). Both problems come from the same
 * seed, so their text streams hold the same inputs.                                     */
static void equals_summary_attention_whose_window_covers_every_chunk(void **state)
{
    (void)state;
    attn_case causal = attn_causal(2, 150, 4, 2, 16);
    attn_case summary = {
        .d = {.nseq = 2, .T = 150, .C = 8, .S = 1, .W = 150 / 8, .Hq = 4, .Hkv = 2, .dh = 16}};
    attn_problem p, s;
    attn_problem_init(&p, &causal, 31);
    attn_problem_init(&s, &summary, 31);
    assert_memory_equal(s.q[0], p.q[0], p.nq[0] * sizeof(ksa_real));
    assert_memory_equal(s.k[0], p.k[0], p.nk[0] * sizeof(ksa_real));
    assert_memory_equal(s.v[0], p.v[0], p.nk[0] * sizeof(ksa_real));
    attn_problem_forward(&p);
    attn_problem_forward(&s);
    double *want = test_to_double(p.o[0], p.nq[0]);
    ksa_expect_close(s.o[0], want, p.nq[0], 1e-6, 1e-6,
                     "summary attention with W >= chunks vs causal");
    free(want);
    attn_problem_free(&p);
    attn_problem_free(&s);
}

static void backward_matches_finite_differences_of_the_kernel(void **state)
{
    (void)state;
#ifdef KSA_REAL_DOUBLE
    const attn_case cases[] = {attn_causal(2, 9, 4, 2, 6), attn_causal(1, 150, 2, 1, 3)};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        attn_check_kernel_differences(&cases[c], 60 + c);
#else
    skip();
#endif
}

static void backward_adds_into_existing_grads_and_accepts_null(void **state)
{
    (void)state;
    attn_case ac = attn_causal(2, 140, 4, 1, 8);
    attn_check_accumulation(&ac, 71);
}

static void results_are_deterministic_for_a_thread_count(void **state)
{
    (void)state;
    attn_case ac = attn_causal(1, 700, 4, 2, 32);
    attn_check_determinism(&ac, 8);
}

/* The op through the tape (opcheck.h) with q needing no gradient: dq is never created;
 * o, dk and dv against the reference's analytic ones.                                  */
static void tape_op_matches_reference(void **state)
{
    (void)state;
    attn_case ac = attn_causal(2, 70, 4, 2, 8);
    opcheck_case cs = attn_op_case(&ac, 1);
    opcheck_run r;
    opcheck_begin(&r, &cs, 17);
    attn_check_op_against_reference(&r, &ac);
    opcheck_end(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reference_backward_matches_its_finite_differences),
        cmocka_unit_test(forward_and_gradients_match_dense_causal_reference),
        cmocka_unit_test(equals_summary_attention_whose_window_covers_every_chunk),
        cmocka_unit_test(backward_matches_finite_differences_of_the_kernel),
        cmocka_unit_test(backward_adds_into_existing_grads_and_accepts_null),
        cmocka_unit_test(results_are_deterministic_for_a_thread_count),
        cmocka_unit_test(tape_op_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
