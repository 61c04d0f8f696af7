/* Shared by the C encoder (_jsonenc.c) and the page transcoder (_transcode.c): an output buffer and
 * json's rules for writing a character (CPython's Modules/_json.c, ensure_ascii): '"' and '\\' and
 * \b \f \n \r \t get their short escapes, every other character outside ' '..'~' is \uXXXX in
 * lowercase hex, one beyond the BMP a UTF-16 surrogate pair. Nothing here keeps state between calls.
 */
#ifndef SIEMCONN_JSONBUF_H
#define SIEMCONN_JSONBUF_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_DEPTH 256

typedef struct {
    char *p;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

/* Grow to room for n more bytes (the slow path of reserve). Returns 0, or -1 with MemoryError set. */
static Py_NO_INLINE int
buf_grow(Buf *b, Py_ssize_t n)
{
    Py_ssize_t need = b->len + n;
    if (n < 0 || need < 0 || need > PY_SSIZE_T_MAX / 2) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < need) {
        cap *= 2;
    }
    char *p = PyMem_Realloc(b->p, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int
reserve(Buf *b, Py_ssize_t n)
{
    return b->cap - b->len >= n ? 0 : buf_grow(b, n);
}

/* A literal into room already reserved. */
#define PUT_LIT(b, lit) (memcpy((b)->p + (b)->len, (lit), sizeof(lit) - 1), (b)->len += sizeof(lit) - 1)

static inline int
buf_put(Buf *b, const char *s, Py_ssize_t n)
{
    if (reserve(b, n) < 0) {
        return -1;
    }
    memcpy(b->p + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

/* For each byte value: 0 if json writes it as is (' '..'~' but '"' and '\\'), else the letter of its
 * short escape, or 'u' for \u00XX. */
static const char ESCAPE[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\', 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
};

/* 1: encoded; 0: not a value this encoder vouches for (the caller returns None); -1: error set. */
static inline char *
put_u(char *o, Py_UCS4 c)
{
    o[0] = '\\';
    o[1] = 'u';
    o[2] = HEX[(c >> 12) & 0xf];
    o[3] = HEX[(c >> 8) & 0xf];
    o[4] = HEX[(c >> 4) & 0xf];
    o[5] = HEX[c & 0xf];
    return o + 6;
}

/* One character that json escapes (ESCAPE[c] != 0 for c < 256, or any c beyond), into room for 12. */
static inline char *
put_escaped(char *o, Py_UCS4 c)
{
    char e = c < 256 ? ESCAPE[c] : 'u';
    if (e != 'u') {
        o[0] = '\\';
        o[1] = e;
        return o + 2;
    }
    if (c >= 0x10000) {
        Py_UCS4 v = c - 0x10000;
        o = put_u(o, 0xd800 | ((v >> 10) & 0x3ff));
        return put_u(o, 0xdc00 | (v & 0x3ff));
    }
    return put_u(o, c);
}

/* json's ascii_escape_unicode, into the buffer. A character needs at most 12 output bytes (a surrogate
 * pair), so room is made per run of at most CHUNK input characters. */
/* One character as json.dumps writes it (room for 12 already made). */
static inline void
out_char(Buf *b, Py_UCS4 c)
{
    if (c < 256 && ESCAPE[c] == 0) {
        b->p[b->len++] = (char)c;
    }
    else {
        char *o = put_escaped(b->p + b->len, c);
        b->len = o - b->p;
    }
}

static inline PyObject *
buf_to_str(Buf *b)
{
    PyObject *out = PyUnicode_New(b->len, 127);
    if (out != NULL && b->len) {
        memcpy(PyUnicode_1BYTE_DATA(out), b->p, (size_t)b->len);
    }
    return out;
}

#endif
