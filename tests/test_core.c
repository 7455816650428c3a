/* test_core.c - arena, tensor views, parameter table, status messages, asserts. */
#include "testutil.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autograd/params.h"
#include "autograd/tape.h"

static void arena_hands_out_aligned_memory_and_resets(void **state)
{
    (void)state;
    ksa_arena a;
    ksa_arena_init(&a, 1000);
    void *p = ksa_arena_alloc(&a, 3), *q = ksa_arena_alloc(&a, 65);
    assert_int_equal((uintptr_t)p % 64, 0);
    assert_int_equal((uintptr_t)q % 64, 0);
    assert_int_equal(a.used, 64 + 128);
    ksa_real *z = ksa_arena_zeros(&a, 10);
    for (int i = 0; i < 10; i++)
        assert_true(z[i] == 0);
    size_t peak = a.peak;
    ksa_arena_reset(&a);
    assert_int_equal(a.used, 0);
    assert_int_equal(a.peak, peak);
    assert_ptr_equal(ksa_arena_alloc(&a, 1), p); /* reset reuses the same memory */
    ksa_arena_free(&a);
}

static void overflow_child(const void *arg)
{
    (void)arg;
    ksa_arena a;
    ksa_arena_init(&a, 256);
    ksa_arena_alloc(&a, 200);
    ksa_arena_alloc(&a, 100);
}

static void arena_overflow_aborts_with_the_sizes(void **state)
{
    (void)state;
    test_expect_abort(overflow_child, NULL, "arena overflow: asked 100 bytes, 256 used of 256");
}

static void tape_full_child(const void *arg)
{
    (void)arg;
    ksa_arena a;
    ksa_arena_init(&a, 256);
    ksa_tape tp;
    ksa_tape_init(&tp, &a, 1);
    ksa_tape_push(&tp, NULL, KSA_OP_ADD);
    ksa_tape_push(&tp, NULL, KSA_OP_LINEAR);
}

static void a_full_tape_aborts_naming_the_op(void **state)
{
    (void)state;
    test_expect_abort(tape_full_child, NULL, "tape full: 1 nodes (pushing linear)");
}

static void views_share_data_and_resolve_gradients_through_the_base(void **state)
{
    (void)state;
    ksa_arena a;
    ksa_arena_init(&a, 1 << 12);
    ksa_tensor *x = ksa_tensor_3d(&a, 4, 3, 2);
    assert_int_equal(x->numel, 24);
    assert_int_equal(ksa_rows(x), 12);
    assert_int_equal(ksa_cols(x), 2);
    x->requires_grad = 1;
    ksa_tensor *v = ksa_tensor_rows(&a, x, 1, 2);
    assert_ptr_equal(v->data, x->data + 6);
    assert_int_equal(v->numel, 12);
    size_t shape[2] = {2, 6};
    ksa_tensor *r = ksa_tensor_reshape(&a, v, 2, shape);
    assert_null(ksa_tensor_grad_if_any(r));
    ksa_real *gr = ksa_tensor_grad(&a, r); /* creates the base's gradient */
    assert_non_null(x->grad);
    assert_ptr_equal(gr, x->grad + 6);
    assert_ptr_equal(ksa_tensor_grad_if_any(v), x->grad + 6);
    ksa_tensor *c = ksa_tensor_2d(&a, 2, 2);
    assert_null(ksa_tensor_grad(&a, c)); /* needs no gradient: none is created */
    ksa_arena_free(&a);
}

static void parameters_are_aligned_named_and_counted(void **state)
{
    (void)state;
    ksa_params p;
    ksa_params_init(&p);
    size_t a = ksa_params_add(&p, "a.weight", 2, 3, 5);
    size_t b = ksa_params_add(&p, "b.weight", 1, 7, 0);
    size_t c = ksa_params_add(&p, "c.weight", 2, 16, 16);
    ksa_params_alloc(&p);
    assert_int_equal(ksa_params_find(&p, "b.weight"), (long)b);
    assert_int_equal(ksa_params_find(&p, "missing"), -1);
    assert_int_equal(ksa_params_count(&p), 15 + 7 + 256);
    for (size_t i = 0; i < p.n; i++) {
        ksa_tensor *t = ksa_params_tensor(&p, i);
        assert_int_equal((uintptr_t)t->data % 64, 0);
        assert_ptr_equal(t->grad - p.grad, t->data - p.data);
        assert_true(t->requires_grad);
    }
    assert_int_equal(ksa_params_tensor(&p, a)->shape[1], 5);
    assert_int_equal(ksa_params_tensor(&p, c)->numel, 256);
    assert_true(p.table[c].offset >= p.table[b].offset + 7);
    ksa_params_free(&p);
}

static ksa_status failing_io(void)
{
    return ksa_fail(KSA_EIO, "cannot open '%s': %s", "x.bin", "No such file or directory");
}

static ksa_status tries(void)
{
    KSA_TRY(failing_io());
    return KSA_OK;
}

static void failures_carry_their_message(void **state)
{
    (void)state;
    assert_int_equal(tries(), KSA_EIO);
    assert_string_equal(ksa_last_error(), "cannot open 'x.bin': No such file or directory");
    assert_string_equal(ksa_status_name(KSA_EIO), "i/o error");
    assert_string_equal(ksa_op_name(KSA_OP_SUMMARY_ATTN), "summary_attention");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_hands_out_aligned_memory_and_resets),
        cmocka_unit_test(arena_overflow_aborts_with_the_sizes),
        cmocka_unit_test(a_full_tape_aborts_naming_the_op),
        cmocka_unit_test(views_share_data_and_resolve_gradients_through_the_base),
        cmocka_unit_test(parameters_are_aligned_named_and_counted),
        cmocka_unit_test(failures_carry_their_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
