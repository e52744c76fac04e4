/*
 * NumPy .npy files: float64 tensors of any rank.
 *
 * A .npy file is the magic "\x93NUMPY", a version (major, minor byte), the
 * header length (2 bytes little-endian in version 1.0, 4 bytes in 2.0 and
 * 3.0), the header, then the raw values. The header is a Python dict literal,
 * padded with spaces and ended by '\n' so that the data starts at a multiple
 * of 64 bytes:
 *
 *   {'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }
 *
 * We write exactly what NumPy writes for a C-ordered float64 array, in
 * version 1.0. We read versions 1.0 to 3.0, '<f8' and '>f8' (swapped to the
 * host's order), and Fortran order (transposed into row-major). The header
 * parser accepts only that dict; anything else is reported, never guessed.
 *
 * SPDX-License-Identifier: MIT
 */
/* For strerror_r (POSIX.1-2001; the XSI form, which returns an int). */
#define _POSIX_C_SOURCE 200112L

#include "core/core.h"

#include <errno.h>
#include <stdio.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64
/* NumPy itself refuses headers above 10000 bytes by default; a longer one is
 * not worth an allocation. */
#define NPY_MAX_HEADER 65536

#define NPY_TRY(expr)                                                          \
    do {                                                                       \
        jac_status npy_st_ = (expr);                                           \
        if (npy_st_ != JAC_OK)                                                 \
            return npy_st_;                                                    \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Byte order                                                               */
/* ------------------------------------------------------------------------ */

static bool host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

static void swap_bytes(double *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char b[sizeof(double)];
        memcpy(b, &values[i], sizeof b);
        for (size_t k = 0; k < sizeof b / 2; k++) {
            unsigned char c = b[k];
            b[k] = b[sizeof b - 1 - k];
            b[sizeof b - 1 - k] = c;
        }
        memcpy(&values[i], b, sizeof b);
    }
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* Where an error happened: the public function and the file (or "stream"). */
typedef struct npy_where {
    jac_ctx *ctx;
    const char *op;
    const char *path; /* NULL for a stream */
} npy_where;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static jac_status
npy_error(const npy_where *w, jac_status code, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (w->path)
        return jac__error(w->ctx, code, "%s: '%s': %s", w->op, w->path, what);
    return jac__error(w->ctx, code, "%s: stream: %s", w->op, what);
}

/* strerror(e), written into buf: strerror itself may return one buffer
 * that every thread shares, and contexts may live on several threads. */
static const char *errno_text(int e, char *buf, size_t size)
{
    if (strerror_r(e, buf, size) != 0)
        snprintf(buf, size, "Unknown error %d", e);
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Header parsing                                                           */
/* ------------------------------------------------------------------------ */

typedef struct npy_header {
    bool have_descr, have_fortran, have_shape;
    bool big_endian;
    bool fortran_order;
    int ndim;
    int64_t shape[JAC_MAX_DIMS];
} npy_header;

typedef struct npy_parser {
    const npy_where *w;
    const char *p, *end;
} npy_parser;

static void skip_space(npy_parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' ||
                               *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

/* Consumes c (after blanks) if it comes next. */
static bool accept(npy_parser *ps, char c)
{
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == c) {
        ps->p++;
        return true;
    }
    return false;
}

static jac_status bad_header(npy_parser *ps, const char *what)
{
    return npy_error(ps->w, JAC_ERR_VALUE, "malformed header: %s", what);
}

/* A quoted Python string without escapes, into buf. */
static jac_status parse_string(npy_parser *ps, char *buf, size_t size)
{
    skip_space(ps);
    if (ps->p >= ps->end || (*ps->p != '\'' && *ps->p != '"'))
        return bad_header(ps, "expected a quoted string");
    char quote = *ps->p++;
    const char *start = ps->p;
    while (ps->p < ps->end && *ps->p != quote && *ps->p != '\n') {
        if (*ps->p == '\\')
            return bad_header(ps, "escapes in strings are not supported");
        ps->p++;
    }
    if (ps->p >= ps->end || *ps->p != quote)
        return bad_header(ps, "unterminated string");
    size_t n = (size_t)(ps->p - start);
    if (n >= size)
        return bad_header(ps, "string too long");
    memcpy(buf, start, n);
    buf[n] = '\0';
    ps->p++;
    return JAC_OK;
}

/* A bare word such as True or False. */
static size_t parse_word(npy_parser *ps, char *buf, size_t size)
{
    skip_space(ps);
    size_t n = 0;
    while (
        ps->p < ps->end && n + 1 < size &&
        ((*ps->p >= 'A' && *ps->p <= 'Z') || (*ps->p >= 'a' && *ps->p <= 'z')))
        buf[n++] = *ps->p++;
    buf[n] = '\0';
    return n;
}

static jac_status parse_descr(npy_parser *ps, npy_header *h)
{
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == '[')
        return npy_error(ps->w, JAC_ERR_VALUE,
                         "structured dtypes are not supported (only float64, "
                         "'<f8')");
    char descr[32];
    NPY_TRY(parse_string(ps, descr, sizeof descr));
    if (strcmp(descr, "<f8") == 0) {
        h->big_endian = false;
    } else if (strcmp(descr, ">f8") == 0) {
        h->big_endian = true;
    } else {
        return npy_error(ps->w, JAC_ERR_VALUE,
                         "dtype '%s' is not float64 (want '<f8' or '>f8')",
                         descr);
    }
    h->have_descr = true;
    return JAC_OK;
}

static jac_status parse_fortran_order(npy_parser *ps, npy_header *h)
{
    char word[8];
    parse_word(ps, word, sizeof word);
    if (strcmp(word, "True") == 0)
        h->fortran_order = true;
    else if (strcmp(word, "False") == 0)
        h->fortran_order = false;
    else
        return bad_header(ps, "fortran_order is neither True nor False");
    h->have_fortran = true;
    return JAC_OK;
}

/* A non-negative decimal integer, with the 'L' suffix of Python 2 files. */
static jac_status parse_extent(npy_parser *ps, int64_t *value)
{
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == '-')
        return npy_error(ps->w, JAC_ERR_VALUE,
                         "malformed header: negative extent in shape");
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
        return bad_header(ps, "shape holds something other than integers");
    int64_t v = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        int digit = *ps->p++ - '0';
        if (v > (INT64_MAX - digit) / 10)
            return npy_error(ps->w, JAC_ERR_OVERFLOW,
                             "an extent of the shape overflows 64 bits");
        v = v * 10 + digit;
    }
    if (ps->p < ps->end && *ps->p == 'L')
        ps->p++;
    *value = v;
    return JAC_OK;
}

/* A tuple of extents: (), (3,), (2, 3) or (2, 3,). */
static jac_status parse_shape(npy_parser *ps, npy_header *h)
{
    if (!accept(ps, '('))
        return bad_header(ps, "shape is not a tuple");
    h->ndim = 0;
    bool comma = false;
    while (!accept(ps, ')')) {
        if (h->ndim > 0 && !comma)
            return bad_header(ps, "expected ',' or ')' in shape");
        if (h->ndim == JAC_MAX_DIMS)
            return npy_error(ps->w, JAC_ERR_RANK,
                             "rank above JAC_MAX_DIMS (%d)", JAC_MAX_DIMS);
        NPY_TRY(parse_extent(ps, &h->shape[h->ndim]));
        h->ndim++;
        comma = accept(ps, ',');
    }
    /* (3) is the integer 3 in Python, not a tuple. */
    if (h->ndim == 1 && !comma)
        return bad_header(ps, "shape (n) must be written (n,)");
    h->have_shape = true;
    return JAC_OK;
}

static jac_status parse_header(const npy_where *w, const char *text, size_t len,
                               npy_header *h)
{
    npy_parser ps = {w, text, text + len};
    npy_parser *p = &ps;
    memset(h, 0, sizeof *h);
    if (!accept(p, '{'))
        return bad_header(p, "not a dict");
    while (!accept(p, '}')) {
        char key[32];
        NPY_TRY(parse_string(p, key, sizeof key));
        if (!accept(p, ':'))
            return bad_header(p, "expected ':' after a key");
        bool seen;
        if (strcmp(key, "descr") == 0) {
            seen = h->have_descr;
            if (!seen)
                NPY_TRY(parse_descr(p, h));
        } else if (strcmp(key, "fortran_order") == 0) {
            seen = h->have_fortran;
            if (!seen)
                NPY_TRY(parse_fortran_order(p, h));
        } else if (strcmp(key, "shape") == 0) {
            seen = h->have_shape;
            if (!seen)
                NPY_TRY(parse_shape(p, h));
        } else {
            return npy_error(w, JAC_ERR_VALUE,
                             "malformed header: unexpected key '%s'", key);
        }
        if (seen)
            return npy_error(w, JAC_ERR_VALUE,
                             "malformed header: key '%s' appears twice", key);
        if (!accept(p, ',')) {
            if (!accept(p, '}'))
                return bad_header(p, "expected ',' or '}' after a value");
            break;
        }
    }
    skip_space(p);
    if (p->p != p->end)
        return bad_header(p, "text after the dict");
    if (!h->have_descr || !h->have_fortran || !h->have_shape)
        return npy_error(w, JAC_ERR_VALUE, "malformed header: missing key '%s'",
                         !h->have_descr     ? "descr"
                         : !h->have_fortran ? "fortran_order"
                                            : "shape");
    return JAC_OK;
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */
/* ------------------------------------------------------------------------ */

/* Bytes left in a seekable stream, or -1 when it cannot tell. */
static long long bytes_left(FILE *in)
{
    long here = ftell(in);
    if (here < 0 || fseek(in, 0, SEEK_END) != 0)
        return -1;
    long end = ftell(in);
    if (fseek(in, here, SEEK_SET) != 0 || end < here)
        return -1;
    return (long long)(end - here);
}

/* Reads the magic, the version and the header text (allocated in ctx). */
static jac_status read_header(const npy_where *w, FILE *in, npy_header *h)
{
    unsigned char pre[NPY_MAGIC_LEN + 2];
    size_t got = fread(pre, 1, sizeof pre, in);
    if (got == 0)
        return npy_error(w, JAC_ERR_VALUE, "empty file, not a .npy file");
    size_t m = got < NPY_MAGIC_LEN ? got : NPY_MAGIC_LEN;
    if (memcmp(pre, NPY_MAGIC, m) != 0)
        return npy_error(w, JAC_ERR_VALUE, "bad magic, not a .npy file");
    if (got < NPY_MAGIC_LEN)
        return npy_error(w, JAC_ERR_VALUE, "truncated in the magic");
    if (got < sizeof pre)
        return npy_error(w, JAC_ERR_VALUE, "truncated before the version");
    int major = pre[NPY_MAGIC_LEN], minor = pre[NPY_MAGIC_LEN + 1];
    if (major < 1 || major > 3 || minor != 0)
        return npy_error(w, JAC_ERR_VALUE,
                         "format version %d.%d is not supported (1.0, 2.0 or "
                         "3.0)",
                         major, minor);
    unsigned char lenbytes[4] = {0, 0, 0, 0};
    size_t nlen = major == 1 ? 2 : 4;
    if (fread(lenbytes, 1, nlen, in) != nlen)
        return npy_error(w, JAC_ERR_VALUE,
                         "truncated before the header length");
    size_t hlen = (size_t)lenbytes[0] | (size_t)lenbytes[1] << 8 |
                  (size_t)lenbytes[2] << 16 | (size_t)lenbytes[3] << 24;
    if (hlen > NPY_MAX_HEADER)
        return npy_error(w, JAC_ERR_VALUE,
                         "header of %zu bytes is too long (at most %d)", hlen,
                         NPY_MAX_HEADER);
    char *text = jac__alloc(w->ctx, hlen + 1);
    if (text == NULL)
        return npy_error(w, JAC_ERR_NO_MEMORY, "out of memory for the header");
    jac_status st = JAC_OK;
    if (fread(text, 1, hlen, in) != hlen)
        st = npy_error(w, JAC_ERR_VALUE, "truncated in the header");
    else if (memchr(text, '\0', hlen) != NULL)
        st = npy_error(w, JAC_ERR_VALUE, "malformed header: a NUL byte");
    else
        st = parse_header(w, text, hlen, h);
    jac__free(w->ctx, text, hlen + 1);
    return st;
}

/* Row-major dst from column-major src of the given shape. */
static void from_fortran_order(double *dst, const double *src, int ndim,
                               const int64_t *shape)
{
    int64_t ss[JAC_MAX_DIMS], ds[JAC_MAX_DIMS];
    int64_t s = 1;
    for (int k = 0; k < ndim; k++) {
        ss[k] = s;
        s *= shape[k];
    }
    jac__contiguous_strides(ndim, shape, 1, ds);
    jac__strided_copy(ndim, shape, src, ss, dst, ds);
}

static jac_tensor *read_npy(const npy_where *w, FILE *in)
{
    jac_ctx *ctx = w->ctx;
    npy_header h;
    if (read_header(w, in, &h) != JAC_OK)
        return NULL;
    char s[JAC__SHAPE_STR_MAX];
    int64_t numel = jac__numel(h.ndim, h.shape);
    if (numel < 0 || (uint64_t)numel > (SIZE_MAX - 4096) / sizeof(double)) {
        npy_error(w, JAC_ERR_OVERFLOW, "element count of shape %s overflows",
                  jac__shape_str(s, sizeof s, h.ndim, h.shape));
        return NULL;
    }
    size_t n = (size_t)numel;
    /* A short file is caught before a large allocation when we can tell. */
    long long left = bytes_left(in);
    if (left >= 0 && (unsigned long long)left < n * sizeof(double)) {
        npy_error(w, JAC_ERR_VALUE,
                  "data too short: %lld bytes for the %zu values of shape %s",
                  left, n, jac__shape_str(s, sizeof s, h.ndim, h.shape));
        return NULL;
    }

    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *t = jac__tensor_alloc(ctx, w->op, h.ndim, h.shape);
    if (t == NULL)
        return NULL;
    double *values = t->data;
    size_t tmp_bytes = n * sizeof(double);
    if (h.fortran_order && h.ndim > 1) {
        values = jac__alloc(ctx, tmp_bytes ? tmp_bytes : 1);
        if (values == NULL) {
            npy_error(w, JAC_ERR_NO_MEMORY, "out of memory for shape %s",
                      jac__shape_str(s, sizeof s, h.ndim, h.shape));
            jac_scope_end(ctx, mark, NULL, 0);
            return NULL;
        }
    }
    size_t got = fread(values, sizeof(double), n, in);
    if (got == n) {
        if (h.big_endian == host_is_little_endian())
            swap_bytes(values, n);
        if (values != t->data)
            from_fortran_order(t->data, values, h.ndim, h.shape);
    } else {
        npy_error(w, JAC_ERR_VALUE,
                  "data too short: %zu of the %zu values of shape %s", got, n,
                  jac__shape_str(s, sizeof s, h.ndim, h.shape));
    }
    if (values != t->data)
        jac__free(ctx, values, tmp_bytes ? tmp_bytes : 1);
    if (got != n) {
        jac_scope_end(ctx, mark, NULL, 0);
        return NULL;
    }
    return t;
}

jac_tensor *jac_read_npy(jac_ctx *ctx, FILE *in)
{
    if (ctx == NULL)
        return NULL;
    if (in == NULL) {
        jac__error(ctx, JAC_ERR_NULL_ARG, "read_npy: stream is NULL");
        return NULL;
    }
    npy_where w = {ctx, "read_npy", NULL};
    return read_npy(&w, in);
}

jac_tensor *jac_load_npy(jac_ctx *ctx, const char *path)
{
    if (ctx == NULL)
        return NULL;
    if (path == NULL) {
        jac__error(ctx, JAC_ERR_NULL_ARG, "load_npy: path is NULL");
        return NULL;
    }
    npy_where w = {ctx, "load_npy", path};
    FILE *in = fopen(path, "rb");
    if (in == NULL) {
        char why[128];
        npy_error(&w, JAC_ERR_VALUE, "cannot open: %s",
                  errno_text(errno, why, sizeof why));
        return NULL;
    }
    jac_tensor *t = read_npy(&w, in);
    (void)fclose(in); /* read only: nothing to lose */
    return t;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */
/* ------------------------------------------------------------------------ */

/* The header NumPy writes for a C-ordered float64 array, padded so that the
 * data starts at a multiple of 64 bytes. Returns the header length. */
static size_t format_header(char *buf, size_t size, const jac_tensor *t)
{
    size_t n = (size_t)snprintf(
        buf, size, "{'descr': '<f8', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < t->ndim; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "",
                              (long long)t->shape[i]);
    n += (size_t)snprintf(buf + n, size - n, "%s), }", t->ndim == 1 ? "," : "");
    size_t total = NPY_MAGIC_LEN + 4 + n + 1;
    size_t padded = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    memset(buf + n, ' ', padded - total);
    n += padded - total;
    buf[n++] = '\n';
    return n;
}

static jac_status write_npy(const npy_where *w, const jac_tensor *t, FILE *out)
{
    /* At most 8 extents of 19 digits: far below the 1.0 limit of 65535. */
    char header[512];
    size_t hlen = format_header(header, sizeof header, t);
    unsigned char pre[NPY_MAGIC_LEN + 4];
    memcpy(pre, NPY_MAGIC, NPY_MAGIC_LEN);
    pre[6] = 1; /* version 1.0 */
    pre[7] = 0;
    pre[8] = (unsigned char)(hlen & 0xff);
    pre[9] = (unsigned char)(hlen >> 8);
    bool ok = fwrite(pre, 1, sizeof pre, out) == sizeof pre &&
              fwrite(header, 1, hlen, out) == hlen;
    size_t n = (size_t)t->numel;
    if (host_is_little_endian()) {
        ok = ok && fwrite(t->data, sizeof(double), n, out) == n;
    } else {
        double chunk[256];
        for (size_t i = 0; ok && i < n; i += 256) {
            size_t m = n - i < 256 ? n - i : 256;
            memcpy(chunk, t->data + i, m * sizeof(double));
            swap_bytes(chunk, m);
            ok = fwrite(chunk, sizeof(double), m, out) == m;
        }
    }
    if (!ok || fflush(out) != 0) {
        char why[128];
        return npy_error(w, JAC_ERR_VALUE, "write failed: %s",
                         errno_text(errno, why, sizeof why));
    }
    return JAC_OK;
}

/* The context of a tensor argument, or NULL when t is NULL or released. */
static jac_ctx *owner(const jac_tensor *t)
{
    return t != NULL && t->magic == JAC__TENSOR_MAGIC ? t->ctx : NULL;
}

jac_status jac_write_npy(const jac_tensor *t, FILE *out)
{
    jac_ctx *ctx = owner(t);
    if (ctx == NULL)
        return t == NULL ? JAC_ERR_NULL_ARG : JAC_ERR_CONTEXT;
    if (out == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "write_npy: stream is NULL");
    npy_where w = {ctx, "write_npy", NULL};
    return write_npy(&w, t, out);
}

jac_status jac_save_npy(const jac_tensor *t, const char *path)
{
    jac_ctx *ctx = owner(t);
    if (ctx == NULL)
        return t == NULL ? JAC_ERR_NULL_ARG : JAC_ERR_CONTEXT;
    if (path == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "save_npy: path is NULL");
    npy_where w = {ctx, "save_npy", path};
    char why[128];
    FILE *out = fopen(path, "wb");
    if (out == NULL)
        return npy_error(&w, JAC_ERR_VALUE, "cannot open for writing: %s",
                         errno_text(errno, why, sizeof why));
    jac_status st = write_npy(&w, t, out);
    if (fclose(out) != 0 && st == JAC_OK)
        st = npy_error(&w, JAC_ERR_VALUE, "write failed: %s",
                       errno_text(errno, why, sizeof why));
    return st;
}
