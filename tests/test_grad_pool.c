/* test_grad_pool.c - the gradient pool's blocks: zeroed, aligned, first fit, freed blocks
 * merged with free neighbours, the top brought down when the last block is freed, the
 * high-water mark (the memory touched) kept.                                            */
#include "testutil.h"

#include <stdint.h>
#include <string.h>

#include "autograd/grad_pool.h"

static void blocks_are_zeroed_aligned_and_disjoint(void **state)
{
    (void)state;
    ksa_grad_pool p;
    ksa_grad_pool_init(&p, 1 << 16);
    ksa_real *a = ksa_grad_pool_zeros(&p, 10), *b = ksa_grad_pool_zeros(&p, 100);
    assert_int_equal((uintptr_t)a % 64, 0);
    assert_int_equal((uintptr_t)b % 64, 0);
    for (int i = 0; i < 10; i++)
        assert_true(a[i] == 0);
    for (int i = 0; i < 100; i++)
        assert_true(b[i] == 0);
    assert_true(b >= a + 10); /* disjoint */
    a[3] = 5;
    ksa_grad_pool_release(&p, a);
    ksa_real *c = ksa_grad_pool_zeros(&p, 8); /* first fit: a's block, zeroed again */
    assert_ptr_equal(c, a);
    assert_true(c[3] == 0);
    ksa_grad_pool_free_all(&p);
}

static void freed_neighbours_merge_and_the_top_comes_down(void **state)
{
    (void)state;
    ksa_grad_pool p;
    ksa_grad_pool_init(&p, 1 << 16);
    size_t n = 64 / sizeof(ksa_real) * 4; /* 256 bytes each */
    ksa_real *a = ksa_grad_pool_zeros(&p, n), *b = ksa_grad_pool_zeros(&p, n);
    ksa_real *c = ksa_grad_pool_zeros(&p, n), *d = ksa_grad_pool_zeros(&p, n);
    assert_int_equal(p.top, 1024);
    assert_int_equal(p.in_use, 1024);
    ksa_grad_pool_release(&p, c);
    ksa_grad_pool_release(&p, b); /* merges with the free c after it: one block of 512 */
    assert_int_equal(p.n, 3);
    ksa_real *e = ksa_grad_pool_zeros(&p, 2 * n); /* fits exactly where b and c were */
    assert_ptr_equal(e, b);
    assert_int_equal(p.top, 1024);
    ksa_grad_pool_release(&p, e);
    ksa_grad_pool_release(&p, d); /* merges with the free e before it; the top comes down */
    assert_int_equal(p.top, 256);
    assert_int_equal(p.n, 1);
    ksa_grad_pool_release(&p, a);
    assert_int_equal(p.top, 0);
    assert_int_equal(p.n, 0);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(p.peak, 1024);
    assert_int_equal(p.high_water, 1024);
    ksa_grad_pool_free_all(&p);
}

static void a_larger_block_than_any_hole_goes_on_top(void **state)
{
    (void)state;
    ksa_grad_pool p;
    ksa_grad_pool_init(&p, 1 << 16);
    ksa_real *a = ksa_grad_pool_zeros(&p, 16), *b = ksa_grad_pool_zeros(&p, 16);
    ksa_grad_pool_release(&p, a); /* a hole of 64 bytes at the bottom */
    ksa_real *c = ksa_grad_pool_zeros(&p, 64);
    assert_true(c > b);
    assert_true(ksa_grad_pool_owns(&p, c));
    assert_false(ksa_grad_pool_owns(&p, &p));
    ksa_grad_pool_reset(&p);
    assert_int_equal(p.top, 0);
    assert_int_equal(p.in_use, 0);
    assert_ptr_equal(ksa_grad_pool_zeros(&p, 1), a);
    ksa_grad_pool_free_all(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(blocks_are_zeroed_aligned_and_disjoint),
        cmocka_unit_test(freed_neighbours_merge_and_the_top_comes_down),
        cmocka_unit_test(a_larger_block_than_any_hole_goes_on_top),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
