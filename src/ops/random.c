/*
 * Random tensors from a counter-based generator: element i of a tensor made
 * with a given seed depends only on (seed, i), never on the tensor's size or
 * shape, on earlier calls, or on the machine.
 *
 * The algorithm is part of the API (changing it changes every user's
 * numbers), so here it is exactly. All integer arithmetic is modulo 2^64.
 *
 *   mix(z):  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
 *            z = (z ^ (z >> 27)) * 0x94d049bb133111eb
 *            return z ^ (z >> 31)
 *   key(seed)        = mix(seed)
 *   bits(seed, i)    = mix(key(seed) + (i + 1) * 0x9e3779b97f4a7c15)
 *   uniform(seed, i) = (bits(seed, i) >> 11) * 2^-53, in [0, 1)
 *
 * bits(seed, i) is the (i + 1)-th output of splitmix64 started from state
 * key(seed), computed directly from the counter instead of by stepping.
 * Scrambling the seed into the key keeps seeds that differ by a multiple of
 * the increment (seed and seed + 0x9e3779b97f4a7c15, say) from giving the
 * same stream shifted by a few places.
 *
 * jac_rand_uniform: element i (row-major) is lo + (hi - lo) * uniform(seed,
 * i); in the rare case that rounding lands on hi, the largest double below
 * hi is used instead, so every value lies in [lo, hi). lo == hi gives lo
 * everywhere; lo > hi, a bound that is not finite or an infinite hi - lo is
 * JAC_ERR_VALUE.
 *
 * jac_rand_normal: element i uses the two uniforms u1 = uniform(seed, 2 i)
 * and u2 = uniform(seed, 2 i + 1) and the cosine branch of Box-Muller,
 *   z = sqrt(-2 log(1 - u1)) * cos(2 pi u2),
 * and is mean + std * z (1 - u1 lies in (0, 1], so the log is finite; 2 pi
 * is the double 6.283185307179586). std must be finite and >= 0. The
 * uniforms are bit-exact everywhere; the normals go through the C library's
 * log and cos, so they are identical across runs and sizes and agree across
 * C libraries to within their rounding (an ulp or so).
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

#include <math.h>

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform(seed, i) of the comment above; key is mix(seed). */
static double counter_uniform(uint64_t key, uint64_t i)
{
    uint64_t bits = mix(key + (i + 1u) * 0x9e3779b97f4a7c15ull);
    return (double)(bits >> 11) * 0x1.0p-53;
}

jac_tensor *jac_rand_uniform(jac_ctx *ctx, int ndim, const int64_t *shape,
                             double lo, double hi, uint64_t seed)
{
    if (ctx == NULL)
        return NULL;
    if (!isfinite(lo) || !isfinite(hi) || lo > hi || !isfinite(hi - lo)) {
        jac__error(ctx, JAC_ERR_VALUE,
                   "rand_uniform: bounds [%g, %g) must be finite, with lo "
                   "<= hi and a finite width",
                   lo, hi);
        return NULL;
    }
    jac_tensor *t = jac__tensor_alloc(ctx, "rand_uniform", ndim, shape);
    if (t == NULL)
        return NULL;
    uint64_t key = mix(seed);
    double width = hi - lo;
    double below = nextafter(hi, lo);
    for (int64_t i = 0; i < t->numel; i++) {
        /* Two statements, so that no compiler fuses them into one fma and
         * changes the rounding from one machine to another. */
        double scaled = width * counter_uniform(key, (uint64_t)i);
        double v = lo + scaled;
        t->data[i] = v < hi ? v : (lo < hi ? below : lo);
    }
    return t;
}

jac_tensor *jac_rand_normal(jac_ctx *ctx, int ndim, const int64_t *shape,
                            double mean, double std, uint64_t seed)
{
    if (ctx == NULL)
        return NULL;
    if (!isfinite(mean) || !isfinite(std) || std < 0.0) {
        jac__error(ctx, JAC_ERR_VALUE,
                   "rand_normal: mean %g and std %g must be finite, std >= 0",
                   mean, std);
        return NULL;
    }
    jac_tensor *t = jac__tensor_alloc(ctx, "rand_normal", ndim, shape);
    if (t == NULL)
        return NULL;
    const double two_pi = 6.283185307179586;
    uint64_t key = mix(seed);
    for (int64_t i = 0; i < t->numel; i++) {
        uint64_t k = 2u * (uint64_t)i;
        double u1 = counter_uniform(key, k);
        double u2 = counter_uniform(key, k + 1u);
        double angle = two_pi * u2;
        double z = sqrt(-2.0 * log(1.0 - u1)) * cos(angle);
        double scaled = std * z;
        t->data[i] = mean + scaled;
    }
    return t;
}
