/*
 * The op table: one row per recorded op, from the list in src/ops/ops.h.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

#define JAC__RAW_PTR_RAW(k) jac__raw_##k
#define JAC__RAW_PTR_NORAW NULL
#define JAC__OP_ROW(e, name, arity, cls, rule, raw, onehot, deps, curv)        \
    [JAC__OP_##e] = {name,                                                     \
                     arity,                                                    \
                     JAC__CLASS_##cls,                                         \
                     jac__vjp_##rule,                                          \
                     JAC__EXPAND(JAC__RAW_PTR_##raw),                          \
                     onehot,                                                   \
                     JAC__CURV_##curv,                                         \
                     jac__apply_##rule,                                        \
                     jac__deps_##deps},

const jac__op_info jac__ops[JAC__OP_COUNT] = {JAC__OP_TABLE(JAC__OP_ROW)};

/* Every op has a row, in the order of the enum. */
#define JAC__OP_ONE(e, name, arity, cls, rule, raw, onehot, deps, curv) +1
_Static_assert(0 JAC__OP_TABLE(JAC__OP_ONE) == JAC__OP_COUNT,
               "every op has exactly one row in the op table");
_Static_assert(sizeof jac__ops / sizeof jac__ops[0] == JAC__OP_COUNT,
               "the op table holds JAC__OP_COUNT rows");
