/* siemconn.events._jsonenc: json.dumps(value) for parsed JSON values, written straight into one buffer.
 *
 * Invariant: for every value it accepts, the result is json.dumps(value) byte for byte (", " and ": "
 * separators, ensure_ascii, allow_nan, no sort_keys), because each rule below is the rule of CPython's
 * own C encoder (Modules/_json.c) and each number is formatted by the very function float.__repr__ and
 * int.__repr__ use:
 *   - None, True, False: null, true, false;
 *   - str (exact type): quoted; ", \ and \b \f \n \r \t get their short escapes; every other character
 *     outside ' '..'~' (controls, DEL, anything non-ASCII, lone surrogates) is \uXXXX in lowercase hex,
 *     a character beyond the BMP a UTF-16 surrogate pair;
 *   - int (exact type, so not bool): its decimal repr (int.__repr__, whose digit limit raises the same
 *     ValueError json.dumps raises);
 *   - float (exact type): float.__repr__ (PyOS_double_to_string 'r' with ADD_DOT_0), and NaN, Infinity,
 *     -Infinity for the non-finite ones;
 *   - list (exact type): "[]" or "[" items joined by ", " "]";
 *   - dict (exact type) with exact str keys: "{}" or "{" key ": " value joined by ", " "}", in the
 *     dict's order.
 * Anything else (tuples, subclasses, non-str keys, nesting deeper than MAX_DEPTH, which keeps the C
 * stack small and leaves json.dumps' RecursionError to json.dumps) is not guessed at: the call returns
 * None and the caller uses its other encoders for the whole input. Python errors (MemoryError, the int
 * digit limit) propagate. No Python code runs during a call (every type is exact), so the containers
 * cannot change under the walk.
 *
 * The output is ASCII by construction, so the result is a compact one-byte str built by one copy.
 */
#include "_jsonbuf.h"

/* 1: encoded; 0: not a value this encoder vouches for (the caller returns None); -1: error set. */
static int encode_value(Buf *b, PyObject *obj, int depth);

#define CHUNK 4096

static int
encode_str(Buf *b, PyObject *s)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    Py_ssize_t i = 0;
    if (reserve(b, (n < CHUNK ? n : CHUNK) * 12 + 2) < 0) {
        return -1;
    }
    b->p[b->len++] = '"';
    while (i < n) {
        Py_ssize_t end = n - i > CHUNK ? i + CHUNK : n;
        if (reserve(b, (end - i) * 12 + 1) < 0) {
            return -1;
        }
        char *o = b->p + b->len;
        if (kind == PyUnicode_1BYTE_KIND) {
            const Py_UCS1 *d = (const Py_UCS1 *)data;
            for (; i < end; i++) {
                Py_UCS1 c = d[i];
                if (ESCAPE[c] == 0) {
                    *o++ = (char)c;
                }
                else {
                    o = put_escaped(o, c);
                }
            }
        }
        else {
            for (; i < end; i++) {
                Py_UCS4 c = PyUnicode_READ(kind, data, i);
                if (c < 256 && ESCAPE[c] == 0) {
                    *o++ = (char)c;
                }
                else {
                    o = put_escaped(o, c);
                }
            }
        }
        b->len = o - b->p;
    }
    b->p[b->len++] = '"';
    return 0;
}

static int
encode_int(Buf *b, PyObject *obj)
{
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (!overflow) {
        char tmp[24];
        char *e = tmp + sizeof(tmp);
        char *q = e;
        unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
        do {
            *--q = (char)('0' + (u % 10));
            u /= 10;
        } while (u);
        if (v < 0) {
            *--q = '-';
        }
        return buf_put(b, q, e - q);
    }
    /* beyond 64 bits: int.__repr__ itself (and its digit limit's ValueError) */
    PyObject *r = PyLong_Type.tp_repr(obj);
    if (r == NULL) {
        return -1;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(r, &n);
    int rc = s == NULL ? -1 : buf_put(b, s, n);
    Py_DECREF(r);
    return rc;
}

static int
encode_float(Buf *b, PyObject *obj)
{
    double d = PyFloat_AS_DOUBLE(obj);
    if (!Py_IS_FINITE(d)) {
        if (Py_IS_NAN(d)) {
            return buf_put(b, "NaN", 3);
        }
        return d > 0 ? buf_put(b, "Infinity", 8) : buf_put(b, "-Infinity", 9);
    }
    /* float_repr's own call */
    char *s = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (s == NULL) {
        return -1;
    }
    int rc = buf_put(b, s, (Py_ssize_t)strlen(s));
    PyMem_Free(s);
    return rc;
}

static int
encode_value(Buf *b, PyObject *obj, int depth)
{
    if (PyUnicode_CheckExact(obj)) {
        return encode_str(b, obj) < 0 ? -1 : 1;
    }
    if (PyLong_CheckExact(obj)) {
        return encode_int(b, obj) < 0 ? -1 : 1;
    }
    if (obj == Py_None || obj == Py_True || obj == Py_False) {
        if (reserve(b, 5) < 0) {
            return -1;
        }
        if (obj == Py_None) {
            PUT_LIT(b, "null");
        }
        else if (obj == Py_True) {
            PUT_LIT(b, "true");
        }
        else {
            PUT_LIT(b, "false");
        }
        return 1;
    }
    if (PyFloat_CheckExact(obj)) {
        return encode_float(b, obj) < 0 ? -1 : 1;
    }
    if (depth >= MAX_DEPTH) {
        return 0;
    }
    if (PyDict_CheckExact(obj)) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        int first = 1;
        if (reserve(b, 1) < 0) {
            return -1;
        }
        b->p[b->len++] = '{';
        while (PyDict_Next(obj, &pos, &key, &value)) {
            if (!PyUnicode_CheckExact(key)) {
                return 0;
            }
            if (!first) {
                if (reserve(b, 2) < 0) {
                    return -1;
                }
                PUT_LIT(b, ", ");
            }
            first = 0;
            if (encode_str(b, key) < 0 || reserve(b, 2) < 0) {
                return -1;
            }
            PUT_LIT(b, ": ");
            int rc = encode_value(b, value, depth + 1);
            if (rc <= 0) {
                return rc;
            }
        }
        if (reserve(b, 1) < 0) {
            return -1;
        }
        b->p[b->len++] = '}';
        return 1;
    }
    if (PyList_CheckExact(obj)) {
        Py_ssize_t n = PyList_GET_SIZE(obj);
        if (reserve(b, 1) < 0) {
            return -1;
        }
        b->p[b->len++] = '[';
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i) {
                if (reserve(b, 2) < 0) {
                    return -1;
                }
                PUT_LIT(b, ", ");
            }
            int rc = encode_value(b, PyList_GET_ITEM(obj, i), depth + 1);
            if (rc <= 0) {
                return rc;
            }
        }
        if (reserve(b, 1) < 0) {
            return -1;
        }
        b->p[b->len++] = ']';
        return 1;
    }
    return 0;
}

/* The buffer as a str (ASCII), or NULL with an error set. */
static PyObject *
jsonenc_dumps(PyObject *Py_UNUSED(module), PyObject *obj)
{
    Buf b = {NULL, 0, 0};
    int rc = encode_value(&b, obj, 0);
    PyObject *out = rc < 0 ? NULL : rc == 0 ? Py_NewRef(Py_None) : buf_to_str(&b);
    PyMem_Free(b.p);
    return out;
}

static PyObject *
jsonenc_dumps_lines(PyObject *Py_UNUSED(module), PyObject *items)
{
    if (!PyList_CheckExact(items)) {
        PyErr_SetString(PyExc_TypeError, "dumps_lines() takes a list");
        return NULL;
    }
    Buf b = {NULL, 0, 0};
    Py_ssize_t n = PyList_GET_SIZE(items);
    /* a page is about a megabyte: start at 256 KB rather than doubling up from 4 KB */
    int rc = n > 64 ? (buf_grow(&b, 1 << 18) < 0 ? -1 : 1) : 1;
    for (Py_ssize_t i = 0; i < n && rc > 0; i++) {
        if (i && buf_put(&b, "\n", 1) < 0) {
            rc = -1;
            break;
        }
        rc = encode_value(&b, PyList_GET_ITEM(items, i), 0);
    }
    PyObject *out = rc < 0 ? NULL : rc == 0 ? Py_NewRef(Py_None) : buf_to_str(&b);
    PyMem_Free(b.p);
    return out;
}

static PyMethodDef jsonenc_methods[] = {
    {"dumps", jsonenc_dumps, METH_O,
     "dumps(value) -> json.dumps(value), or None when value is outside the parsed-JSON domain."},
    {"dumps_lines", jsonenc_dumps_lines, METH_O,
     "dumps_lines(list) -> '\\n'.join(map(json.dumps, list)), or None when any item is outside the "
     "parsed-JSON domain."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef jsonenc_module = {
    PyModuleDef_HEAD_INIT,
    "siemconn.events._jsonenc",
    "json.dumps for parsed JSON values, in one C pass (see siemconn.events.encoder).",
    0,
    jsonenc_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__jsonenc(void)
{
    return PyModuleDef_Init(&jsonenc_module);
}
