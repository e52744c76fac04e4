#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz_program.c into fuzz/corpus/.

Each seed is a small program in the harness's byte code (see the comment at
the top of fuzz_program.c and its op_* functions): one per feature, so that
fuzzing starts from inputs that already reach every part of the library.
Run it again after changing the byte code: python3 fuzz/make_corpus.py
"""
import hashlib
import os
import struct

(NEW, NEW_HOSTILE, UNARY, KINKED, BINARY, SCALAR, REDUCE, SHAPE, INDEX, GRAD,
 BACKWARD, JACOBIAN, FUNCTIONAL, SCOPE, CONTROL, STREAM) = range(16)

# Indices into the harness's tables.
UN = {name: i for i, name in enumerate(
    "neg exp log sin cos tanh sqrt rsqrt square reciprocal expm1 log1p tan "
    "asin acos atan sinh cosh asinh sigmoid softplus erf sum mean prod trace "
    "inverse det logdet cholesky".split())}
KINK = {"abs": 0, "sign": 1, "relu": 2, "max": 3, "min": 4}
BIN = {name: i for i, name in enumerate(
    "add sub mul div pow atan2 matmul solve dot outer".split())}
SCAL = {"add": 0, "sub": 1, "mul": 2, "div": 3, "pow": 4}
RED = {name: i for i, name in enumerate(
    "sum mean prod max min logsumexp var std norm softmax log_softmax "
    "sum_axis sum_to_shape".split())}
SHP = {name: i for i, name in enumerate(
    "reshape transpose permute slice concat stack split flatten squeeze "
    "unsqueeze pad diagonal copy".split())}
SPECIAL = {"0": 0, "-0": 1, "nan": 2, "inf": 3, "-inf": 4, "1e300": 5,
           "-1e300": 6, "tiny": 7}


EXACT = {0.0: 0, 1.0: 8, -1.0: 9, 0.5: 10, 2.0: 11}


def val(x):
    """A value byte: special values by name, exact small ones, else about
    -4 .. 4 (to 1/29)."""
    if isinstance(x, str):
        return SPECIAL[x]
    if x in EXACT and not (x == 0.0 and str(x).startswith("-")):
        return EXACT[x]
    b = int(round(x * 29 + 140))
    assert 24 <= b <= 255, x
    return b


def integer(v):
    if v == "max":
        return 255
    if v == "min":
        return 254
    assert -7 <= v <= 7
    return v if v >= 0 else (v - 8) & 0xFF


def axis(a):
    if a == "min":
        return 255
    if a == "max":
        return 254
    assert -5 <= a <= 5
    return a + 5


def new(dst, shape, values=None, leaf=False, phase=0):
    how = (1 if values is not None else 0) | (2 if leaf else 0) | (phase << 4)
    out = [NEW, len(shape)] + list(shape) + [how]
    if values is not None:
        n = 1
        for e in shape:
            n *= e
        assert len(values) == n
        out += [val(v) for v in values]
    return out + [dst]


def unary(name, a, dst):
    return [UNARY, UN[name], a, dst]


def kinked(name, a, dst):
    return [KINKED, 1, KINK[name], a, dst]


def clamp(a, lo, hi, dst):
    return [KINKED, 0, a, val(lo), val(hi), dst]


def binary(name, a, b, dst, kink=False):
    k = ({"maximum": 0, "minimum": 1}[name] | 128) if kink else BIN[name]
    return [BINARY, k, a, b, dst]


def scalar(name, a, c, dst):
    return [SCALAR, SCAL[name], a, val(c), dst]


def reduce(name, a, dst, axes=(), keep=False, extra=()):
    ax = [axis(x) for x in axes] + [axis(0)] * (3 - len(axes))
    return ([REDUCE, a, len(axes)] + ax + [1 if keep else 0, RED[name]] +
            list(extra) + [dst])


def shape_op(name, a, args, dst):
    return [SHAPE, a, SHP[name]] + list(args) + [dst]


def index_select(a, ax, idx, dst):
    ints = [integer(i) for i in idx] + [0] * (16 - len(idx))
    return [INDEX, a] + ints + [0, axis(ax), len(idx), dst]


def gather(a, ax, ishape, idx, dst):
    ints = [integer(i) for i in idx] + [0] * (16 - len(idx))
    ext = list(ishape) + [1] * (8 - len(ishape))
    return [INDEX, a] + ints + [1] + ext + [axis(ax), dst]


def where(cond, a, b, dst):
    return [INDEX, a] + [0] * 16 + [2, cond, b, dst]


def grad(y, dst, flags=4, seed=None):
    """jac_grad of y with respect to the tensors requiring gradients; flags
    default to JAC_ALLOW_UNUSED (several registers may require them)."""
    b = flags | (16 if seed == "ones" else 0) | (32 if isinstance(seed, int)
                                                 else 0)
    out = [GRAD, y, b]
    if isinstance(seed, int):
        out.append(seed)
    return out + [dst]


def backward(y, flags=0, seed=None):
    out = [BACKWARD, y, flags | (8 if seed is not None else 0)]
    return out + ([seed] if seed is not None else [])


def jacobian(y0, dst, y1=0, two=False, create=False, chunk=0, mode=0,
             cancel=None):
    b = ((1 if create else 0) | (chunk << 1) | (mode << 3) |
         (64 | 128 if cancel is not None else 0))
    out = [JACOBIAN, y0, y1, 1 if two else 0, b]
    if cancel is not None:
        out.append(cancel - 1)
    return out + [dst]


def functional(case, chain, x, dst, create=False, chunk=0, v=None):
    b = case | (8 if create else 0) | (chunk << 4)
    out = [FUNCTIONAL] + [UN[c] for c in chain] + [x, b]
    if v is not None:
        out.append(v)
    return out + [dst]


def scope_begin():
    return [SCOPE, 1]


def scope_end(keep=()):
    k = list(keep) + [0, 0]
    return [SCOPE, len(keep) << 1, k[0], k[1]]


def control(case, arg=0, *rest):
    """The byte b with b % 6 == case whose high bits give arg as the harness
    reads them (threads, grad mode, budget, requires_grad)."""
    wanted = {
        0: lambda b: 1 + (b >> 3) % 4 == arg,
        1: lambda b: (b >> 3) & 1 == arg,
        2: lambda b: b >> 3 == arg,
        3: lambda b: bool(b & 8) == bool(arg),
    }.get(case, lambda b: True)
    b = next(b for b in range(256) if b % 6 == case and wanted(b))
    return [CONTROL, b] + list(rest)


def stream(case, t, tail=()):
    return [STREAM, case, t] + list(tail)


def npy_bytes(shape, values):
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%s), }" % (
        "".join("%d, " % e for e in shape) if len(shape) != 1 else
        "%d," % shape[0])
    total = 10 + len(header) + 1
    pad = (64 - total % 64) % 64
    header = header + " " * pad + "\n"
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header))
    data += header.encode("latin1")
    data += b"".join(struct.pack("<d", v) for v in values)
    return data


def program(*parts, threads=1, fail_at=None, fd=False):
    flags = (threads - 1) | (4 if fail_at is not None else 0) | (8 if fd else 0)
    k = fail_at or 0
    out = [flags, k & 0xFF, k >> 8]
    for p in parts:
        out += p
    return bytes(out)


X3 = [0.5, -1.0, 1.5]
M22 = [2.0, 0.5, 0.5, 1.0]


SEEDS = {
    "smooth_chain_grad": program(
        new(0, [3], X3, leaf=True), unary("sin", 0, 1), unary("exp", 1, 2),
        binary("mul", 2, 0, 3), reduce("sum", 3, 4), grad(4, 5), fd=True),
    "matmul_tanh_jacobian": program(
        new(0, [3], X3, leaf=True), new(1, [2, 3], phase=3),
        binary("matmul", 1, 0, 2), unary("tanh", 2, 3),
        jacobian(3, 4, mode=1, chunk=1), jacobian(3, 5, mode=1), fd=True),
    "jacobian_forward_mode": program(
        new(0, [2], [0.3, -0.7], leaf=True), new(1, [3, 2], phase=1),
        binary("matmul", 1, 0, 2), unary("sigmoid", 2, 3),
        jacobian(3, 4, mode=2, chunk=1), jacobian(3, 5, mode=2, create=True),
        grad(5, 6, seed="ones"), fd=True),
    "hessian": program(
        new(0, [3], X3, leaf=True),
        functional(0, ["sin", "tanh", "exp", "square"], 0, 1),
        functional(0, ["cos", "sigmoid", "neg", "tanh"], 0, 2, create=True),
        fd=True),
    "vjp_jvp_hvp": program(
        new(0, [3], X3, leaf=True), new(1, [3], [1.0, -2.0, 0.5]),
        functional(2, ["tanh", "sin", "neg", "exp"], 0, 2, v=1),
        functional(3, ["tanh", "sin", "neg", "exp"], 0, 3, v=1),
        functional(4, ["tanh", "sin", "neg", "exp"], 0, 4, v=1)),
    "batch_jacobian_and_fn": program(
        new(0, [3, 2], phase=2, leaf=True),
        functional(1, ["tanh", "sin", "square", "exp"], 0, 1),
        functional(5, ["atan", "sigmoid", "neg", "sinh"], 0, 2, chunk=2),
        functional(7, ["exp", "exp", "exp", "exp"], 0, 3, v=1)),
    "gradcheck": program(
        new(0, [2], [0.4, -0.3], leaf=True),
        functional(6, ["tanh", "sin", "exp", "neg"], 0, 1)),
    "reductions": program(
        new(0, [2, 3], phase=5, leaf=True),
        reduce("logsumexp", 0, 1, axes=[1]), reduce("var", 0, 2, extra=[1]),
        reduce("std", 0, 3, axes=[0], keep=True, extra=[0]),
        reduce("norm", 0, 4, extra=[1]), reduce("prod", 0, 5, axes=[-1]),
        reduce("mean", 0, 6, axes=[0, 1]), binary("add", 1, 6, 7),
        reduce("sum", 7, 8), grad(8, 9, flags=2), fd=True),
    "softmax_jacobian": program(
        new(0, [2, 3], phase=7, leaf=True),
        reduce("softmax", 0, 1, axes=[1]),
        reduce("log_softmax", 0, 2, axes=[0]), binary("mul", 1, 2, 3),
        jacobian(3, 4, chunk=2), fd=True),
    "shape_ops": program(
        new(0, [2, 3], phase=4, leaf=True),
        shape_op("reshape", 0, [2, integer(3), integer(-1), 0], 1),
        shape_op("transpose", 1, [axis(0), axis(1)], 2),
        shape_op("permute", 0, [axis(1), axis(0)] + [0] * 6, 3),
        shape_op("slice", 0, [axis(1), integer(0), integer(3), integer(2)],
                 4),
        shape_op("concat", 0, [1, 0, 0, axis(0)], 5),
        shape_op("stack", 0, [1, 0, 0, axis(2)], 6),
        shape_op("split", 0, [2, integer(1), integer(2), 0, axis(1)], 7),
        shape_op("flatten", 6, [axis(0), axis(-1)], 8),
        reduce("sum", 8, 9), grad(9, 10), fd=True),
    "index_ops": program(
        new(0, [2, 3], phase=6, leaf=True), new(1, [3], [1.0, 0.0, 1.0]),
        index_select(0, 1, [2, 0, 0, 1], 2),
        gather(0, 1, [2, 2], [2, 0, 1, 1], 3),
        where(1, 0, 0, 4), reduce("sum", 2, 5), reduce("sum", 3, 6),
        binary("add", 5, 6, 7), grad(7, 8), fd=True),
    "pad_diagonal_squeeze": program(
        new(0, [3, 3], phase=2, leaf=True),
        shape_op("pad", 0, [integer(1), integer(0), integer(0),
                            integer(2)] + [0] * 12, 1),
        shape_op("diagonal", 1, [integer(1), axis(0), axis(1)], 2),
        shape_op("unsqueeze", 2, [axis(0)], 3),
        shape_op("squeeze", 3, [axis(0)], 4),
        reduce("sum", 4, 5), grad(5, 6), fd=True),
    "lapack": program(
        new(0, [2, 2], M22, leaf=True), new(1, [2], [1.0, -1.0]),
        binary("solve", 0, 1, 2), unary("inverse", 0, 3),
        unary("det", 0, 4), unary("logdet", 0, 5), unary("cholesky", 0, 6),
        reduce("sum", 3, 7), binary("add", 7, 4, 8), binary("add", 8, 5, 9),
        grad(9, 10, flags=2 | 4), jacobian(6, 11), fd=True),
    "singular_matrix": program(
        new(0, [2, 2], [1.0, 2.0, 0.5, 1.0], leaf=True),
        unary("inverse", 0, 1), unary("det", 0, 2), grad(2, 3),
        unary("cholesky", 0, 4), unary("logdet", 0, 5)),
    "nan_inf_values": program(
        new(0, [2, 3], ["nan", "inf", "-inf", "0", "-0", "1e300"], leaf=True),
        unary("exp", 0, 1), unary("log", 0, 2), unary("tanh", 0, 3),
        reduce("logsumexp", 0, 4), reduce("softmax", 0, 5),
        kinked("max", 0, 6), reduce("sum", 1, 7), grad(7, 8),
        jacobian(3, 9)),
    "hostile_shapes": program(
        [NEW_HOSTILE, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0],
        [NEW_HOSTILE, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1],
        [NEW_HOSTILE, 4, 6, 2, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        [NEW_HOSTILE, 5, 6, 4, 0, 0, 0, 0, 0, 0, 0, 0, 3],
        new(4, [2], [1.0, 2.0]),
        [NEW_HOSTILE, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 2, 4, 5],
        [NEW_HOSTILE, 4, 1, 2, 0, 0, 0, 0, 0, 0, 0, 3, 4, 6]),
    "huge_empty_tensor": program(
        [NEW_HOSTILE, 6, 6, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0],
        unary("exp", 0, 1), shape_op("transpose", 0, [axis(0), axis(2)], 2),
        reduce("sum", 0, 3, axes=[0]), shape_op("concat", 0, [2, 0, 0,
                                                             axis(1)], 4)),
    "scopes_and_stale_tensors": program(
        new(0, [3], X3, leaf=True), scope_begin(), unary("sin", 0, 1),
        unary("exp", 1, 2), scope_begin(), unary("cos", 2, 3),
        scope_end([2]), scope_end(), unary("tanh", 1, 4),
        unary("tanh", 2, 5), grad(3, 6)),
    "threads_and_progress": program(
        new(0, [4], [0.1, 0.2, -0.3, 0.4], leaf=True),
        binary("outer", 0, 0, 1), unary("sin", 1, 2),
        jacobian(2, 3, chunk=1, mode=1), jacobian(2, 4, chunk=2, mode=2),
        jacobian(2, 5, chunk=1, mode=1, cancel=3), threads=4),
    "allocation_failure_early": program(
        new(0, [3], X3, leaf=True), unary("exp", 0, 1), reduce("sum", 1, 2),
        grad(2, 3, flags=2 | 4), jacobian(1, 4), fail_at=20),
    "allocation_failure_late": program(
        new(0, [3], X3, leaf=True), new(1, [2, 3], phase=1),
        binary("matmul", 1, 0, 2), unary("tanh", 2, 3),
        jacobian(3, 4, mode=2), functional(0, ["sin", "exp", "tanh", "neg"],
                                           0, 5),
        fail_at=150, threads=2),
    "npy_round_trip": program(
        new(0, [2, 3], phase=3), stream(0, 0), new(1, [], [2.0]),
        stream(0, 1)),
    "npy_parse": program(
        stream(1, 0, [len(npy_bytes([2], [1.5, -2.0]))] +
               list(npy_bytes([2], [1.5, -2.0]))),
        unary("exp", 1, 2)),
    "npy_parse_truncated": program(
        stream(1, 3, [40] + list(npy_bytes([3, 1], [1.0, 2.0, 3.0])[:40]))),
    "dot_and_print": program(
        new(0, [3], X3, leaf=True), unary("sin", 0, 1),
        reduce("sum", 1, 2), stream(2, 2), stream(6, 2), stream(3, 1)),
    "foreign_tensor": program(
        new(0, [2], [1.0, 2.0], leaf=True), control(3, 1, 1),
        binary("add", 0, 1, 2), grad(1, 3), control(3, 0, 4),
        jacobian(4, 5)),
    "backward_twice": program(
        new(0, [3], X3, leaf=True), unary("square", 0, 1),
        reduce("sum", 1, 2), backward(2, flags=1), backward(2),
        backward(2), control(4, 0, 0)),
    "create_graph_jacobian": program(
        new(0, [2], [0.3, 0.9], leaf=True), unary("sinh", 0, 1),
        binary("mul", 1, 0, 2), jacobian(2, 3, create=True, chunk=1),
        unary("trace", 3, 4), grad(4, 5), fd=True),
    "zero_size": program(
        new(0, [2, 0], leaf=True), unary("exp", 0, 1), reduce("sum", 0, 2),
        reduce("prod", 0, 3), kinked("max", 0, 4),
        binary("matmul", 0, 0, 5), jacobian(1, 6), grad(2, 7),
        shape_op("concat", 0, [2, 0, 0, axis(1)], 8)),
    "batched_seeds": program(
        new(0, [3], X3, leaf=True), unary("sin", 0, 1),
        new(2, [2, 3], phase=1), grad(1, 3, flags=8 | 4, seed=2),
        grad(1, 4, flags=8, seed=2)),
    "kinked_ops": program(
        new(0, [4], [-1.0, 0.0, 0.5, 2.0], leaf=True), kinked("abs", 0, 1),
        kinked("relu", 0, 2), clamp(0, -0.5, 1.0, 3),
        binary("maximum", 1, 2, 4, kink=True), kinked("sign", 0, 5),
        reduce("sum", 4, 6), grad(6, 7)),
    "no_grad_mode": program(
        new(0, [3], X3, leaf=True), control(1, 0), unary("exp", 0, 1),
        grad(1, 2, seed="ones"), control(1, 1), unary("exp", 0, 3),
        grad(3, 4, seed="ones")),
    "tiny_memory_budget": program(
        new(0, [4], [0.1, 0.2, -0.3, 0.4], leaf=True), control(2, 1),
        unary("exp", 0, 1), jacobian(1, 2), control(2, 0),
        jacobian(1, 3)),
    "pow_and_scalars": program(
        new(0, [3], [0.5, 1.0, 1.5], leaf=True), scalar("pow", 0, 2.5, 1),
        scalar("div", 0, 0.0, 2), [SCALAR, 128, 0, val(1.0), 3],
        binary("pow", 0, 0, 4), binary("atan2", 0, 1, 5),
        reduce("sum", 4, 6), grad(6, 7), fd=True),
    "released_graph": program(
        new(0, [3], X3, leaf=True), unary("exp", 0, 1), reduce("sum", 1, 2),
        grad(2, 3), grad(2, 4), jacobian(1, 5)),
    "axis_extremes": program(
        new(0, [2, 3], phase=2), reduce("sum", 0, 1, axes=["min"]),
        shape_op("transpose", 0, [axis("max"), axis(0)], 2),
        shape_op("slice", 0, [axis(1), integer("min"), integer("max"),
                              integer("max")], 3),
        shape_op("diagonal", 0, [integer("min"), axis(0), axis(1)], 4)),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "corpus")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        os.remove(os.path.join(out, name))
    for name, data in sorted(SEEDS.items()):
        digest = hashlib.sha1(data).hexdigest()[:8]
        with open(os.path.join(out, "%s-%s" % (name, digest)), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(SEEDS), out))


if __name__ == "__main__":
    main()
