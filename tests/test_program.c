/*
 * Recorded functions: recorded once, replayed at new points, they give
 * the values, VJPs and Jacobians of recording afresh there, bitwise, for
 * every row of the op table; derived gradient programs give Hessians;
 * branches written with comparisons and jac_where replay both ways; reads
 * that may steer control flow are refused; parameters change results; no
 * allocation once warm; several threads agree with one.
 *
 * SPDX-License-Identifier: MIT
 */
#include "op_rows.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------ */
/* The op rows as functions                                                 */
/* ------------------------------------------------------------------------ */

OP_ROWS_TABLE

/* Values of input k at point `point`, in the row's domain. */
static void point_values(const op_row *r, int k, int point, int64_t n,
                         double *v)
{
    for (int64_t i = 0; i < n; i++)
        v[i] =
            r->lo +
            (r->hi - r->lo) *
                (0.5 + 0.45 * sin(0.9 * (double)i + 0.31 * (double)(i * i) +
                                  1.7 * (double)k + 0.3 + 2.3 * (double)point));
}

/* Equal numbers: the same bits, but for the sign of a zero (a Jacobian's
 * structural zeros may come from a product or from a fill). */
static void assert_equal_values(const char *label, const char *what,
                                const double *a, const double *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!(a[i] == b[i] || memcmp(&a[i], &b[i], sizeof(double)) == 0)) {
            print_error("%s: %s differs at %lld: replay %.17g, fresh %.17g\n",
                        label, what, (long long)i, a[i], b[i]);
            fail();
        }
}

static void assert_same(const char *label, const char *what, const double *a,
                        const double *b, int64_t n)
{
    if (memcmp(a, b, (size_t)n * sizeof(double)) != 0) {
        for (int64_t i = 0; i < n; i++)
            if (memcmp(&a[i], &b[i], sizeof(double)) != 0) {
                print_error("%s: %s differs at %lld: replay %.17g, fresh "
                            "%.17g\n",
                            label, what, (long long)i, a[i], b[i]);
                break;
            }
        fail();
    }
}

/* Every row: recorded at point 0, replayed at points 1 and 2, against
 * recording afresh there: values and VJPs bitwise, Jacobians bitwise but
 * for the sign of zeros. */
static void test_rows_replay(void **state)
{
    (void)state;
    for (size_t ri = 0; ri < TU_COUNT(op_rows_table); ri++) {
        const op_row *r = &op_rows_table[ri];
        jac_ctx *ctx = jac_ctx_new();
        assert_non_null(ctx);
        op_rows_shape s[4];
        op_rows_shapes(r, s);
        jac_tensor *in[4];
        double vals[4][64];
        for (int k = 0; k < r->nin; k++) {
            point_values(r, k, 0, s[k].numel, vals[k]);
            in[k] = jac_tensor_new(ctx, s[k].ndim, s[k].shape, vals[k]);
            assert_non_null(in[k]);
        }
        jac_program *prog = NULL;
        jac_status st =
            jac_program_record(ctx, op_rows_run, (void *)r, (size_t)r->nin, in,
                               0, NULL, 1, 0, &prog);
        if (st != JAC_OK) {
            print_error("%s: record: %s\n", r->label, jac_errmsg(ctx));
            fail();
        }
        int64_t m;
        assert_true(jac_program_shape(prog, 'o', 0, NULL, &m) >= 0);
        for (int point = 1; point <= 2; point++) {
            const double *args[4];
            for (int k = 0; k < r->nin; k++) {
                point_values(r, k, point, s[k].numel, vals[k]);
                args[k] = vals[k];
            }
            /* Fresh: record again at the point. */
            jac_scope mark = jac_scope_begin(ctx);
            jac_tensor *x[4], *y = NULL;
            for (int k = 0; k < r->nin; k++) {
                x[k] = jac_tensor_new(ctx, s[k].ndim, s[k].shape, vals[k]);
                jac_set_requires_grad(x[k], true);
            }
            tu_assert_ok(ctx, op_rows_run(ctx, x, &y, (void *)r));
            double *yv = malloc((size_t)m * sizeof(double) + 8);
            double *seed = malloc((size_t)m * sizeof(double) + 8);
            for (int64_t i = 0; i < m; i++)
                seed[i] = 0.5 + 0.25 * cos(1.3 * (double)i);
            tu_assert_ok(NULL, jac_program_eval(prog, args, &yv));
            assert_same(r->label, "value", yv, jac_tensor_data(y), m);
            /* The VJP against jac_grad with the same seed. */
            jac_tensor *seed_t = jac_tensor_new(ctx, jac_tensor_ndim(y),
                                                jac_tensor_shape(y), seed);
            jac_tensor *g[4] = {0};
            tu_assert_ok(ctx, jac_grad(ctx, 1, &y, &seed_t, (size_t)r->nin, x,
                                       JAC_RETAIN_GRAPH | JAC_ALLOW_UNUSED, g));
            double *gv[4], *Jv[4];
            for (int k = 0; k < r->nin; k++) {
                gv[k] = malloc((size_t)s[k].numel * sizeof(double) + 8);
                Jv[k] = malloc((size_t)(s[k].numel * m) * sizeof(double) + 8);
            }
            const double *seeds[1] = {seed};
            if (jac_program_vjp(prog, args, seeds, NULL, gv) != JAC_OK) {
                print_error("%s: vjp: %s\n", r->label, jac_program_errmsg());
                fail();
            }
            for (int k = 0; k < r->nin; k++) {
                if (g[k] != NULL)
                    assert_same(r->label, "vjp", gv[k], jac_tensor_data(g[k]),
                                s[k].numel);
                else
                    for (int64_t i = 0; i < s[k].numel; i++)
                        assert_true(gv[k][i] == 0.0);
            }
            /* The Jacobian against the dynamic one. */
            jac_tensor *J[4] = {0};
            jac_jacobian_opts o = {.flags = JAC_ALLOW_UNUSED};
            tu_assert_ok(ctx,
                         jac_jacobian_ex(ctx, 1, &y, (size_t)r->nin, x, &o, J));
            if (jac_program_jacobian(prog, args, NULL, Jv) != JAC_OK) {
                print_error("%s: jacobian: %s\n", r->label,
                            jac_program_errmsg());
                fail();
            }
            for (int k = 0; k < r->nin; k++)
                assert_equal_values(r->label, "jacobian", Jv[k],
                                    jac_tensor_data(J[k]), m * s[k].numel);
            /* The JVP (by the derived VJP program) is J v. */
            double *jv = malloc((size_t)m * sizeof(double) + 8),
                   *want = malloc((size_t)m * sizeof(double) + 8);
            const double *v[4];
            double vv[4][64];
            for (int k = 0; k < r->nin; k++) {
                for (int64_t i = 0; i < s[k].numel; i++)
                    vv[k][i] = 0.3 + 0.2 * sin(1.1 * (double)i + k);
                v[k] = vv[k];
            }
            double *jvs[1] = {jv};
            if (jac_program_jvp(prog, args, v, NULL, jvs) != JAC_OK) {
                print_error("%s: jvp: %s\n", r->label, jac_program_errmsg());
                fail();
            }
            for (int64_t i = 0; i < m; i++) {
                want[i] = 0.0;
                for (int k = 0; k < r->nin; k++)
                    for (int64_t c = 0; c < s[k].numel; c++)
                        want[i] += Jv[k][i * s[k].numel + c] * vv[k][c];
            }
            tu_assert_close(jv, want, (size_t)m, 1e-10, 1e-10);
            free(jv);
            free(want);
            for (int k = 0; k < r->nin; k++) {
                free(gv[k]);
                free(Jv[k]);
            }
            free(yv);
            free(seed);
            jac_scope_end(ctx, mark, NULL, 0);
        }
        jac_ctx_free(ctx); /* the program outlives its context */
        const double *args[4];
        double *out = malloc((size_t)m * sizeof(double) + 8);
        for (int k = 0; k < r->nin; k++)
            args[k] = vals[k];
        tu_assert_ok(NULL, jac_program_eval(prog, args, &out));
        free(out);
        jac_program_free(prog);
    }
}

/* The row's op, and each input times 2 + k as further outputs: in the
 * reverse sweep those products write their input's adjoint first, so the
 * op's cotangents are added to it (by the raw kernel where it has one). */
static jac_status row_with_products(jac_ctx *ctx, jac_tensor *const *in,
                                    jac_tensor **out, void *user)
{
    const op_row *r = user;
    jac_status st = op_rows_run(ctx, in, out, user);
    for (int k = 0; k < r->nin && st == JAC_OK; k++)
        if ((out[k + 1] = jac_mul_scalar(ctx, in[k], 2.0 + k)) == NULL)
            st = jac_errcode(ctx);
    return st;
}

/* Every row with its inputs read again after the op: the replayed VJP
 * and Jacobian, where the op's cotangents add to what the adjoints hold,
 * equal the dynamic ones bit for bit (the Jacobian but for the sign of a
 * structural zero). */
static void test_rows_adjoints_add(void **state)
{
    (void)state;
    for (size_t ri = 0; ri < TU_COUNT(op_rows_table); ri++) {
        const op_row *r = &op_rows_table[ri];
        jac_ctx *ctx = jac_ctx_new();
        op_rows_shape s[4];
        op_rows_shapes(r, s);
        jac_tensor *in[4];
        double vals[4][64];
        size_t nout = (size_t)r->nin + 1;
        for (int k = 0; k < r->nin; k++) {
            point_values(r, k, 0, s[k].numel, vals[k]);
            in[k] = jac_tensor_new(ctx, s[k].ndim, s[k].shape, vals[k]);
        }
        jac_program *prog = NULL;
        if (jac_program_record(ctx, row_with_products, (void *)r,
                               (size_t)r->nin, in, 0, NULL, nout, 0,
                               &prog) != JAC_OK) {
            print_error("%s: record: %s\n", r->label, jac_errmsg(ctx));
            fail();
        }
        const double *args[4];
        jac_tensor *x[4], *y[5] = {0}, *seed_t[5];
        for (int k = 0; k < r->nin; k++) {
            point_values(r, k, 1, s[k].numel, vals[k]);
            args[k] = vals[k];
            x[k] = jac_tensor_new(ctx, s[k].ndim, s[k].shape, vals[k]);
            jac_set_requires_grad(x[k], true);
        }
        tu_assert_ok(ctx, row_with_products(ctx, x, y, (void *)r));
        double seeds[5][64];
        const double *sp[5];
        for (size_t o = 0; o < nout; o++) {
            int64_t m = jac_tensor_numel(y[o]);
            for (int64_t i = 0; i < m; i++)
                seeds[o][i] = 0.5 + 0.25 * cos(1.3 * (double)i + (double)o);
            sp[o] = seeds[o];
            seed_t[o] = jac_tensor_new(ctx, jac_tensor_ndim(y[o]),
                                       jac_tensor_shape(y[o]), seeds[o]);
        }
        jac_tensor *g[4] = {0};
        tu_assert_ok(ctx, jac_grad(ctx, nout, y, seed_t, (size_t)r->nin, x,
                                   JAC_RETAIN_GRAPH, g));
        double gv[4][64];
        double *gp[4] = {gv[0], gv[1], gv[2], gv[3]};
        if (jac_program_vjp(prog, args, sp, NULL, gp) != JAC_OK) {
            print_error("%s: vjp: %s\n", r->label, jac_program_errmsg());
            fail();
        }
        for (int k = 0; k < r->nin; k++)
            assert_same(r->label, "vjp, adding", gv[k], jac_tensor_data(g[k]),
                        s[k].numel);
        /* Every block of the Jacobian, against the dynamic drivers'. */
        jac_tensor *J[20] = {0};
        jac_jacobian_opts o = {.flags = JAC_ALLOW_UNUSED};
        tu_assert_ok(ctx,
                     jac_jacobian_ex(ctx, nout, y, (size_t)r->nin, x, &o, J));
        double *Jv[20];
        for (size_t b = 0; b < nout * (size_t)r->nin; b++)
            Jv[b] = malloc((size_t)jac_tensor_numel(J[b]) * sizeof(double) + 8);
        if (jac_program_jacobian(prog, args, NULL, Jv) != JAC_OK) {
            print_error("%s: jacobian: %s\n", r->label, jac_program_errmsg());
            fail();
        }
        for (size_t b = 0; b < nout * (size_t)r->nin; b++) {
            assert_equal_values(r->label, "jacobian, adding", Jv[b],
                                jac_tensor_data(J[b]), jac_tensor_numel(J[b]));
            free(Jv[b]);
        }
        jac_program_free(prog);
        jac_ctx_free(ctx);
    }
}

/* ------------------------------------------------------------------------ */
/* The worked example and the chain                                         */
/* ------------------------------------------------------------------------ */

static void test_square(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(2.0, 3.0));
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 0, NULL));
    jac_tensor *y = jac_pow_scalar(ctx, x, 2.0);
    jac_program *prog = NULL;
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &y, 0, &prog));
    assert_false(jac_requires_grad(x)); /* as it was */
    double J[4], yv[2];
    const double *args[1] = {TU_VALUES(2.0, 3.0)};
    double *Jp[1] = {J}, *yp[1] = {yv};
    tu_assert_ok(NULL, jac_program_jacobian(prog, args, yp, Jp));
    tu_assert_close(J, TU_VALUES(4.0, 0.0, 0.0, 6.0), 4, 0.0, 0.0);
    tu_assert_close(yv, TU_VALUES(4.0, 9.0), 2, 0.0, 0.0);
    args[0] = TU_VALUES(1.0, 5.0);
    tu_assert_ok(NULL, jac_program_jacobian(prog, args, yp, Jp));
    tu_assert_close(J, TU_VALUES(2.0, 0.0, 0.0, 10.0), 4, 0.0, 0.0);
    tu_assert_close(yv, TU_VALUES(1.0, 25.0), 2, 0.0, 0.0);
    /* JVP, and the Hessian of sum(w * y) = diag(2 w). */
    double jv[2], H[4];
    double *jp[1] = {jv}, *Hp[1] = {H};
    const double *v[1] = {TU_VALUES(1.0, -1.0)};
    tu_assert_ok(NULL, jac_program_jvp(prog, args, v, NULL, jp));
    tu_assert_close(jv, TU_VALUES(2.0, -10.0), 2, 0.0, 0.0);
    const double *w[1] = {TU_VALUES(3.0, 0.5)};
    tu_assert_ok(NULL, jac_program_hessian(prog, args, w, Hp));
    tu_assert_close(H, TU_VALUES(6.0, 0.0, 0.0, 1.0), 4, 0.0, 0.0);
    jac_program_free(prog);
    /* A diagonal Jacobian comes from one pass, its zeros exact even next
     * to an infinite entry, as the dynamic drivers give it. */
    x = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1.0, 4.0));
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 0, NULL));
    y = jac_sqrt(ctx, x);
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &y, 0, &prog));
    for (int p = 0; p < 2; p++) {
        double xv[2] = {p == 0 ? 9.0 : 0.0, 4.0};
        args[0] = xv;
        tu_assert_ok(NULL, jac_program_jacobian(prog, args, NULL, Jp));
        jac_tensor *xt = tu_leaf(ctx, TU_SHAPE(2), xv);
        jac_tensor *Jd = jac_jacobian(ctx, jac_sqrt(ctx, xt), xt, 0);
        assert_non_null(Jd);
        assert_memory_equal(J, jac_tensor_data(Jd), sizeof J);
    }
    assert_true(isinf(J[0]) && J[1] == 0.0 && J[2] == 0.0);
    jac_program_free(prog);
}

enum { CHAIN_K = 300 };

static jac_status chain(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                        void *user)
{
    (void)user;
    jac_tensor *x = in[0];
    for (int i = 0; i < CHAIN_K; i++)
        x = jac_add(ctx, x, jac_mul_scalar(ctx, jac_sin(ctx, x), 0.001));
    out[0] = x;
    return x ? JAC_OK : jac_errcode(ctx);
}

/* The scalar chain of P4: the gradient by replay equals the dynamic one
 * bitwise at every point. */
static void test_chain(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x0 = jac_scalar(ctx, 0.5);
    jac_program *prog = NULL;
    tu_assert_ok(ctx, jac_program_record(ctx, chain, NULL, 1, &x0, 0, NULL, 1,
                                         0, &prog));
    size_t bytes = 0;
    assert_int_equal(jac_program_length(prog, &bytes), 3 * CHAIN_K);
    for (int p = 0; p < 5; p++) {
        double x = 0.3 + 0.7 * p, y, g;
        const double *args[1] = {&x};
        double *yp[1] = {&y}, *gp[1] = {&g};
        tu_assert_ok(NULL, jac_program_vjp(prog, args, NULL, yp, gp));
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *xt = tu_scalar_leaf(ctx, x), *yt = NULL, *gt = NULL;
        tu_assert_ok(ctx, chain(ctx, &xt, &yt, NULL));
        tu_assert_ok(ctx, jac_grad(ctx, 1, &yt, NULL, 1, &xt, 0, &gt));
        assert_true(y == jac_tensor_item(yt));
        assert_true(g == jac_tensor_item(gt));
        jac_scope_end(ctx, mark, NULL, 0);
    }
    jac_program_free(prog);
}

/* ------------------------------------------------------------------------ */
/* Hessians by derived programs                                             */
/* ------------------------------------------------------------------------ */

static jac_status rosenbrock(jac_ctx *ctx, jac_tensor *const *in,
                             jac_tensor **out, void *user)
{
    (void)user;
    jac_tensor *x = in[0];
    int64_t n = jac_tensor_numel(x);
    jac_tensor *a = jac_slice(ctx, x, 0, 1, n, 1);
    jac_tensor *b = jac_slice(ctx, x, 0, 0, n - 1, 1);
    jac_tensor *t = jac_sub(ctx, a, jac_square(ctx, b));
    jac_tensor *u = jac_rsub_scalar(ctx, 1.0, b);
    out[0] = jac_sum(
        ctx, jac_add(ctx, jac_mul_scalar(ctx, jac_square(ctx, t), 100.0),
                     jac_square(ctx, u)));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

static void test_hessian(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_smooth_leaf(ctx, TU_SHAPE(6), 0.2);
    jac_program *prog = NULL;
    tu_assert_ok(ctx, jac_program_record(ctx, rosenbrock, NULL, 1, &x, 0, NULL,
                                         1, 0, &prog));
    for (int p = 0; p < 3; p++) {
        double xv[6], H[36], Hv[6], v[6];
        for (int i = 0; i < 6; i++) {
            xv[i] = 0.4 * sin(1.1 * i + p);
            v[i] = cos(0.7 * i - p);
        }
        const double *args[1] = {xv}, *vp[1] = {v};
        double *Hp[1] = {H}, *hp[1] = {Hv};
        tu_assert_ok(NULL, jac_program_hessian(prog, args, NULL, Hp));
        tu_assert_ok(NULL, jac_program_hvp(prog, args, NULL, vp, hp));
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *xt = tu_tensor(ctx, TU_SHAPE(6), xv);
        jac_tensor *Ht = jac_hessian(ctx, rosenbrock, NULL, xt, 0);
        assert_non_null(Ht);
        tu_assert_close(H, jac_tensor_data(Ht), 36, 1e-10, 1e-12);
        for (int i = 0; i < 6; i++) {
            double s = 0.0;
            for (int j = 0; j < 6; j++)
                s += H[i * 6 + j] * v[j];
            tu_assert_close(&Hv[i], &s, 1, 1e-10, 1e-12);
        }
        jac_scope_end(ctx, mark, NULL, 0);
    }
    /* The gradient program is a program: its Jacobian is the Hessian. */
    jac_program *gp = NULL;
    tu_assert_ok(NULL, jac_program_gradient(prog, 0, &gp));
    assert_int_equal(jac_program_count(gp, 'i'), 1);
    assert_int_equal(jac_program_count(gp, 'p'), 1);
    double xv[6] = {0.1, -0.2, 0.3, 0.5, -0.7, 0.2}, one = 1.0, H1[36], H2[36];
    const double *gargs[2] = {xv, &one}, *args[1] = {xv};
    double *H1p[1] = {H1}, *H2p[1] = {H2};
    tu_assert_ok(NULL, jac_program_jacobian(gp, gargs, NULL, H1p));
    tu_assert_ok(NULL, jac_program_hessian(prog, args, NULL, H2p));
    tu_assert_close(H1, H2, 36, 0.0, 0.0);
    jac_program_free(gp);
    jac_program_free(prog);
}

/* f(a, b; p, q) = sum(p a b + q b^2): two inputs and two parameters. */
static jac_status many_args(jac_ctx *ctx, jac_tensor *const *in,
                            jac_tensor **out, void *user)
{
    (void)user;
    jac_tensor *t = jac_mul(ctx, in[2], jac_mul(ctx, in[0], in[1]));
    out[0] = jac_sum(
        ctx, jac_add(ctx, t, jac_mul(ctx, in[3], jac_square(ctx, in[1]))));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

/* The gradient program of a program of several inputs and parameters,
 * with the seeds as inputs: its argument lists once ran past the end of
 * their buffer (valgrind: an invalid write in jac_program_gradient). */
static void test_gradient_of_many_args(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *args0[4];
    for (int k = 0; k < 4; k++)
        args0[k] = tu_smooth_leaf(ctx, TU_SHAPE(2), 0.3 * k);
    jac_program *prog = NULL;
    tu_assert_ok(ctx, jac_program_record(ctx, many_args, NULL, 2, args0, 2,
                                         args0 + 2, 1, 0, &prog));
    jac_program *gp = NULL;
    tu_assert_ok(NULL,
                 jac_program_gradient(prog, JAC_PROGRAM_SEEDS_AS_INPUTS, &gp));
    assert_int_equal(jac_program_count(gp, 'i'), 3);
    assert_int_equal(jac_program_count(gp, 'p'), 2);
    assert_int_equal(jac_program_count(gp, 'o'), 2);
    double a[2] = {0.5, -1.0}, b[2] = {2.0, 0.25};
    double p[2] = {1.5, -2.0}, q[2] = {0.5, 3.0};
    double w = 2.5, ga[2], gb[2];
    const double *args[5] = {a, b, &w, p, q};
    double *grads[2] = {ga, gb};
    tu_assert_ok(NULL, jac_program_eval(gp, args, grads));
    for (int i = 0; i < 2; i++) {
        double want[2] = {w * p[i] * b[i],
                          w * (p[i] * a[i] + 2.0 * q[i] * b[i])};
        tu_assert_close(&ga[i], &want[0], 1, 1e-15, 1e-14);
        tu_assert_close(&gb[i], &want[1], 1, 1e-15, 1e-14);
    }
    jac_program_free(gp);
    jac_program_free(prog);
}

/* ------------------------------------------------------------------------ */
/* Branches, reads, parameters                                              */
/* ------------------------------------------------------------------------ */

/* y = x > c ? x^2 : -x, with c a parameter. */
static jac_status branch(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                         void *user)
{
    (void)user;
    jac_tensor *x = in[0], *c = in[1];
    out[0] =
        jac_where(ctx, jac_gt(ctx, x, c), jac_square(ctx, x), jac_neg(ctx, x));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

static void test_branch_and_params(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(-1.0, 0.5, 2.0));
    jac_tensor *c = jac_scalar(ctx, 0.0);
    jac_program *prog = NULL;
    tu_assert_ok(
        ctx, jac_program_record(ctx, branch, NULL, 1, &x, 1, &c, 1, 0, &prog));
    assert_int_equal(jac_program_count(prog, 'p'), 1);
    /* Every element flips side between the two points. */
    double x1[3] = {1.0, -0.5, -2.0}, c0 = 0.0, y[3], J[9];
    const double *args[2] = {x1, &c0};
    double *yp[1] = {y}, *Jp[1] = {J};
    tu_assert_ok(NULL, jac_program_jacobian(prog, args, yp, Jp));
    tu_assert_close(y, TU_VALUES(1.0, 0.5, 2.0), 3, 0.0, 0.0);
    tu_assert_close(J, TU_VALUES(2.0, 0, 0, 0, -1.0, 0, 0, 0, -1.0), 9, 0.0,
                    0.0);
    /* A new parameter moves the branch without re-recording. */
    double c1 = 1.5;
    args[1] = &c1;
    tu_assert_ok(NULL, jac_program_jacobian(prog, args, yp, Jp));
    tu_assert_close(y, TU_VALUES(-1.0, 0.5, 2.0), 3, 0.0, 0.0);
    tu_assert_close(J, TU_VALUES(-1.0, 0, 0, 0, -1.0, 0, 0, 0, -1.0), 9, 0.0,
                    0.0);
    jac_program_free(prog);
}

static jac_status lse(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                      void *user)
{
    (void)user;
    out[0] = jac_logsumexp(ctx, in[0], 0, NULL, false);
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

/* logsumexp's stabilising shift is computed again at the new point: at
 * inputs near 1000, a shift kept from inputs near 0 would overflow. */
static void test_shift_follows_inputs(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(0.1, 0.2, 0.3));
    jac_program *prog = NULL;
    tu_assert_ok(
        ctx, jac_program_record(ctx, lse, NULL, 1, &x, 0, NULL, 1, 0, &prog));
    double far[3] = {1000.0, 1001.0, 999.0}, y, g[3];
    const double *args[1] = {far};
    double *yp[1] = {&y}, *gp[1] = {g};
    tu_assert_ok(NULL, jac_program_vjp(prog, args, NULL, yp, gp));
    jac_tensor *xf = tu_leaf(ctx, TU_SHAPE(3), far), *yf = NULL, *gf = NULL;
    tu_assert_ok(ctx, lse(ctx, &xf, &yf, NULL));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &yf, NULL, 1, &xf, 0, &gf));
    assert_true(isfinite(y));
    assert_true(y == jac_tensor_item(yf));
    assert_memory_equal(g, jac_tensor_data(gf), sizeof g);
    jac_program_free(prog);
}

static jac_status kinks(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                        void *user)
{
    (void)user;
    jac_tensor *x = in[0];
    jac_tensor *r = jac_relu(ctx, x);
    jac_tensor *a = jac_mul(ctx, jac_abs(ctx, x), x);
    jac_tensor *c = jac_square(ctx, jac_clamp(ctx, x, -0.7, 0.7));
    out[0] = jac_sum(ctx, jac_add(ctx, jac_add(ctx, jac_square(ctx, r), a), c));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

static jac_status winner(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                         void *user)
{
    (void)user;
    jac_tensor *m = jac_maximum(ctx, in[0], jac_scalar(ctx, 0.0));
    out[0] = jac_sum(ctx, jac_square(ctx, m));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

/* The masks of relu, abs, clamp and maximum in a derived gradient program
 * are ops of their own, computed again at the new point: the Hessian
 * replayed where every kink flips side equals the dynamic one. */
static void test_kinks_replay(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1.0, -1.0, 0.5));
    jac_program *prog = NULL;
    tu_assert_ok(
        ctx, jac_program_record(ctx, kinks, NULL, 1, &x, 0, NULL, 1, 0, &prog));
    double x1[3] = {-1.0, 1.0, -0.9}, H[9];
    const double *args[1] = {x1};
    double *Hp[1] = {H};
    tu_assert_ok(NULL, jac_program_hessian(prog, args, NULL, Hp));
    jac_tensor *Hd =
        jac_hessian(ctx, kinks, NULL, tu_tensor(ctx, TU_SHAPE(3), x1), 0);
    assert_non_null(Hd);
    assert_memory_equal(H, jac_tensor_data(Hd), sizeof H);
    tu_assert_close(H, TU_VALUES(-2.0, 0, 0, 0, 4.0, 0, 0, 0, -2.0), 9, 0.0,
                    0.0);
    jac_program_free(prog);
    tu_assert_ok(ctx, jac_program_record(ctx, winner, NULL, 1, &x, 0, NULL, 1,
                                         0, &prog));
    tu_assert_ok(NULL, jac_program_hessian(prog, args, NULL, Hp));
    Hd = jac_hessian(ctx, winner, NULL, tu_tensor(ctx, TU_SHAPE(3), x1), 0);
    assert_non_null(Hd);
    assert_memory_equal(H, jac_tensor_data(Hd), sizeof H);
    tu_assert_close(H, TU_VALUES(0, 0, 0, 0, 2.0, 0, 0, 0, 0), 9, 0.0, 0.0);
    jac_program_free(prog);
    /* A mask a rule still takes as a constant is refused, by name: the
     * 1-norm's sign is an op, but a user's detached value is not. */
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1.0, 2.0, 3.0));
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &a, 0, NULL));
    jac_tensor *d = jac_detach(ctx, jac_exp(ctx, a));
    jac_tensor *o = jac_sum(ctx, jac_mul(ctx, d, a));
    assert_int_equal(jac_program_end(ctx, 1, &o, 0, &prog), JAC_ERR_STATE);
    tu_assert_contains(jac_errmsg(ctx), "jac_detach");
    jac_clear_error(ctx);
    /* jac_tensor_copy cuts the value from the graph all the same. */
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &a, 0, NULL));
    d = jac_tensor_copy(ctx, jac_exp(ctx, a));
    o = jac_sum(ctx, jac_mul(ctx, d, a));
    assert_int_equal(jac_program_end(ctx, 1, &o, 0, &prog), JAC_ERR_STATE);
    assert_null(prog);
    jac_clear_error(ctx);
}

/* Clamps to [0, -0] and then to [0, 0]: equal bounds by ==, not by bits,
 * and a clamp returns its bound as it is, so the program keeps both (it
 * once shared the first's bounds with the second, and returned -0). */
static void test_clamp_signed_zero_bounds(void **state)
{
    (void)state;
    jac_ctx *ctx = jac_ctx_new();
    double x0 = 0.25;
    jac_tensor *x = jac_tensor_new(ctx, 0, NULL, &x0);
    jac_program *prog = NULL;
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 0, NULL));
    jac_tensor *y =
        jac_clamp(ctx, jac_cos(ctx, jac_clamp(ctx, x, 0.0, -0.0)), 0.0, 0.0);
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &y, 0, &prog));
    assert_true(jac_tensor_data(y)[0] == 0.0 &&
                !signbit(jac_tensor_data(y)[0]));
    double at = 0.5, out = 1.0;
    const double *args[1] = {&at};
    double *outs[1] = {&out};
    tu_assert_ok(NULL, jac_program_eval(prog, args, outs));
    assert_true(out == 0.0 && !signbit(out));
    jac_program_free(prog);
    jac_ctx_free(ctx);
}

/* Reads a value computed from the input and branches on it in C. */
static jac_status reads(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                        void *user)
{
    (void)user;
    jac_tensor *s = jac_sin(ctx, in[0]);
    out[0] = jac_tensor_item(s) > 0.0 ? jac_square(ctx, s) : s;
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

static jac_status reads_input(jac_ctx *ctx, jac_tensor *const *in,
                              jac_tensor **out, void *user)
{
    (void)user;
    out[0] = jac_tensor_data(in[0])[0] > 0.0 ? jac_exp(ctx, in[0]) : in[0];
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

static void test_read_refused(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = jac_scalar(ctx, 0.5);
    jac_program *prog = NULL;
    assert_int_equal(
        jac_program_record(ctx, reads, NULL, 1, &x, 0, NULL, 1, 0, &prog),
        JAC_ERR_STATE);
    assert_null(prog);
    tu_assert_contains(jac_errmsg(ctx), "sin");
    tu_assert_contains(jac_errmsg(ctx), "jac_where");
    jac_clear_error(ctx);
    assert_int_equal(
        jac_program_record(ctx, reads_input, NULL, 1, &x, 0, NULL, 1, 0, &prog),
        JAC_ERR_STATE);
    tu_assert_contains(jac_errmsg(ctx), "input 0");
    jac_clear_error(ctx);
    tu_assert_ok(ctx, jac_program_record(ctx, reads, NULL, 1, &x, 0, NULL, 1,
                                         JAC_PROGRAM_READS_OK, &prog));
    jac_program_free(prog);
    /* A value computed with recording off inside the section. */
    jac_tensor *a = jac_scalar(ctx, 2.0);
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &a, 0, NULL));
    jac_set_grad_enabled(ctx, false);
    jac_tensor *b = jac_exp(ctx, a);
    jac_set_grad_enabled(ctx, true);
    jac_tensor *c = jac_mul(ctx, b, a);
    assert_int_equal(jac_program_end(ctx, 1, &c, 0, &prog), JAC_ERR_STATE);
    tu_assert_contains(jac_errmsg(ctx), "recording off");
    jac_clear_error(ctx);
    /* Calls in the wrong state. */
    assert_int_equal(jac_program_end(ctx, 1, &c, 0, &prog), JAC_ERR_STATE);
    jac_clear_error(ctx);
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &a, 0, NULL));
    assert_int_equal(jac_program_begin(ctx, 1, &a, 0, NULL), JAC_ERR_STATE);
    jac_clear_error(ctx);
    jac_tensor *d = jac_exp(ctx, a);
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &d, 0, &prog));
    /* Bad evaluation arguments. */
    double yv, *yp[1] = {&yv};
    assert_int_equal(jac_program_eval(prog, NULL, yp), JAC_ERR_NULL_ARG);
    tu_assert_contains(jac_program_errmsg(), "args");
    const double *bad[1] = {NULL};
    assert_int_equal(jac_program_eval(prog, bad, yp), JAC_ERR_NULL_ARG);
    tu_assert_contains(jac_program_errmsg(), "input 0");
    assert_int_equal(jac_program_eval(NULL, bad, yp), JAC_ERR_NULL_ARG);
    jac_program_free(prog);
}

/* ------------------------------------------------------------------------ */
/* Allocation and threads                                                   */
/* ------------------------------------------------------------------------ */

typedef struct counter {
    _Atomic long calls;
} counter;

static void *count_alloc(size_t size, void *user)
{
    counter *c = user;
    atomic_fetch_add(&c->calls, 1);
    return malloc(size);
}

static void count_free(void *p, void *user)
{
    (void)user;
    free(p);
}

static jac_status mlp(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                      void *user)
{
    (void)user;
    jac_tensor *W =
        jac_reshape(ctx, jac_arange(ctx, 0.0, 12.0, 1.0), 2, TU_SHAPE(3, 4));
    W = jac_mul_scalar(ctx, jac_sin(ctx, W), 0.5);
    jac_tensor *h = jac_tanh(ctx, jac_matmul(ctx, W, in[0]));
    out[0] =
        jac_add(ctx, jac_sum(ctx, jac_exp(ctx, h)), jac_mul(ctx, in[1], in[1]));
    out[1] = jac_mul(ctx, h, in[1]);
    return out[0] && out[1] ? JAC_OK : jac_errcode(ctx);
}

static void test_no_allocation_when_warm(void **state)
{
    (void)state;
    counter c = {0};
    jac_allocator a = {count_alloc, count_free, &c};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&a);
    assert_non_null(ctx);
    jac_tensor *in[2] = {tu_smooth_leaf(ctx, TU_SHAPE(4), 0.1),
                         jac_scalar(ctx, 0.7)};
    jac_program *prog = NULL;
    tu_assert_ok(
        ctx, jac_program_record(ctx, mlp, NULL, 2, in, 0, NULL, 2, 0, &prog));
    jac_ctx_free(ctx);
    double x[4] = {0.1, 0.2, -0.3, 0.4}, s = 0.3, y0, y1[3], g0[4], g1;
    double J[4 * 4 + 4 + 3 * 4 + 3], H[25];
    const double *args[2] = {x, &s}, *seeds[2] = {TU_VALUES(1.0), NULL};
    double *yp[2] = {&y0, y1}, *gp[2] = {g0, &g1};
    double *Jp[4] = {J, J + 4, J + 5, J + 17};
    double *Hp[4] = {H, H + 16, H + 20, H + 24};
    const double *w[2] = {TU_VALUES(1.0), TU_VALUES(0.5, -1.0, 2.0)};
    for (int round = 0; round < 3; round++) {
        long before = atomic_load(&c.calls);
        tu_assert_ok(NULL, jac_program_eval(prog, args, yp));
        tu_assert_ok(NULL, jac_program_vjp(prog, args, seeds, yp, gp));
        tu_assert_ok(NULL, jac_program_jacobian(prog, args, yp, Jp));
        tu_assert_ok(NULL, jac_program_hessian(prog, args, w, Hp));
        tu_assert_ok(NULL, jac_program_jvp(prog, args, args, NULL, yp));
        double hv[4];
        double *hvp[2] = {hv, NULL};
        tu_assert_ok(NULL, jac_program_hvp(prog, args, w, args, hvp));
        long after = atomic_load(&c.calls);
        if (round > 0 && after != before) {
            print_error("round %d: %ld allocations\n", round, after - before);
            fail();
        }
        x[0] += 0.1;
    }
    jac_program_free(prog);
}

/* A network of NET inputs and outputs: its Jacobians are large enough
 * for the program to share their blocks out to threads. */
#define NET 64

typedef struct job {
    jac_program *prog;
    int index;
    double J[NET * NET], y[NET], H[NET * NET];
    jac_status st;
} job;

static void *job_main(void *arg)
{
    job *j = arg;
    double x[NET], w[NET];
    for (int i = 0; i < NET; i++)
        w[i] = cos(0.3 * i);
    for (int r = 0; r < 8 && j->st == JAC_OK; r++) {
        for (int i = 0; i < NET; i++)
            x[i] = 0.1 * (j->index % 3) + 0.05 * sin(i);
        const double *args[1] = {x};
        double *Jp[1] = {j->J}, *yp[1] = {j->y};
        j->st = jac_program_jacobian(j->prog, args, yp, Jp);
        /* The first Hessian derives the gradient program: threads race to
         * install it. */
        const double *ws[1] = {w};
        double *Hp[1] = {j->H};
        if (j->st == JAC_OK)
            j->st = jac_program_hessian(j->prog, args, ws, Hp);
    }
    return NULL;
}

static jac_status tanh_net(jac_ctx *ctx, jac_tensor *const *in,
                           jac_tensor **out, void *user)
{
    (void)user;
    jac_tensor *W =
        jac_reshape(ctx, jac_arange(ctx, 0.0, 16.0, 1.0), 2, TU_SHAPE(4, 4));
    W = jac_cos(ctx, W);
    out[0] = jac_tanh(ctx, jac_matmul(ctx, W, jac_sin(ctx, in[0])));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

static void test_threads(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_smooth_leaf(ctx, TU_SHAPE(4), 0.3);
    jac_program *prog = NULL;
    tu_assert_ok(ctx, jac_program_record(ctx, tanh_net, NULL, 1, &x, 0, NULL, 1,
                                         0, &prog));
    job jobs[6];
    pthread_t tid[6];
    for (int t = 0; t < 6; t++) {
        jobs[t] = (job){.prog = prog, .index = t, .st = JAC_OK};
        assert_int_equal(pthread_create(&tid[t], NULL, job_main, &jobs[t]), 0);
    }
    for (int t = 0; t < 6; t++)
        pthread_join(tid[t], NULL);
    for (int t = 0; t < 6; t++) {
        assert_int_equal(jobs[t].st, JAC_OK);
        static job one;
        one = (job){.prog = prog, .index = t, .st = JAC_OK};
        job_main(&one);
        assert_memory_equal(one.J, jobs[t].J, sizeof one.J);
        assert_memory_equal(one.y, jobs[t].y, sizeof one.y);
        assert_memory_equal(one.H, jobs[t].H, sizeof one.H);
    }
    /* The Jacobian on two threads of the program's own. */
    tu_assert_ok(NULL, jac_program_set_threads(prog, 2));
    static job two;
    two = (job){.prog = prog, .index = 1, .st = JAC_OK};
    job_main(&two);
    assert_memory_equal(two.J, jobs[1].J, sizeof two.J);
    jac_program_free(prog);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_replay),
        cmocka_unit_test(test_rows_adjoints_add),
        cmocka_unit_test(test_clamp_signed_zero_bounds),
        TU_TEST(test_square),
        TU_TEST(test_chain),
        TU_TEST(test_hessian),
        TU_TEST(test_gradient_of_many_args),
        TU_TEST(test_branch_and_params),
        TU_TEST(test_read_refused),
        TU_TEST(test_shift_follows_inputs),
        TU_TEST(test_kinks_replay),
        cmocka_unit_test(test_no_allocation_when_warm),
        TU_TEST(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
