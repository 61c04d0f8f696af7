/* siemconn.queue._jsonenc: json.dumps(value) for parsed JSON values, written straight into one buffer.
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

static int
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
static int encode_value(Buf *b, PyObject *obj, int depth);

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
buf_to_str(Buf *b)
{
    PyObject *out = PyUnicode_New(b->len, 127);
    if (out != NULL && b->len) {
        memcpy(PyUnicode_1BYTE_DATA(out), b->p, (size_t)b->len);
    }
    return out;
}

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

/* ---- transcode: a page's JSON text -> json.dumps of each event, without building the objects ----------
 *
 * transcode_page(body) reads an API page `{"events": [{...}, ...], ...}` and writes, for each event,
 * json.dumps(json.loads(event text)) byte for byte, straight from the text. It vouches only for what it
 * parses exactly as orjson.loads followed by json.dumps would: strict JSON (RFC 8259), strings of valid
 * UTF-8 whose escapes decode to no lone surrogate, integers of at most 18 digits (copied, "-0" -> "0"),
 * finite floats (parsed by PyOS_string_to_double, written by float.__repr__'s own call), objects without
 * a repeated key (json.loads would keep the first position and the last value), at most MAX_DEPTH deep.
 * On anything else it returns None and the caller parses the page as before: it never guesses.
 *
 * Each event's top-level "id" must be an integer (or null, or absent); it is returned parsed.
 */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    Buf *out;
    /* the output spans (start, length) of the keys of the objects being written, a stack across levels */
    Py_ssize_t *keys;
    Py_ssize_t nkeys;
    Py_ssize_t capkeys;
} Reader;

#define MAX_KEYS 256 /* keys per object compared for repeats; an object with more is left to the parser */

static inline void
skip_ws(Reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t')) {
        r->p++;
    }
}

static inline int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int
read_u4(Reader *r, Py_UCS4 *out)
{
    if (r->end - r->p < 4) {
        return 0;
    }
    Py_UCS4 v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(r->p[k]);
        if (h < 0) {
            return 0;
        }
        v = (v << 4) | (Py_UCS4)h;
    }
    r->p += 4;
    *out = v;
    return 1;
}

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

/* A string token at r->p (the opening quote), re-encoded. 1, 0 (not vouched for), -1 (error). */
static int
tc_string(Reader *r)
{
    Buf *b = r->out;
    const unsigned char *p = r->p + 1, *end = r->end;
    if (reserve(b, 1) < 0) {
        return -1;
    }
    b->p[b->len++] = '"';
    for (;;) {
        /* a run of plain ASCII, copied */
        const unsigned char *q = p;
        while (q < end && *q >= 0x20 && *q < 0x7f && *q != '"' && *q != '\\') {
            q++;
        }
        if (q > p) {
            if (buf_put(b, (const char *)p, q - p) < 0) {
                return -1;
            }
            p = q;
        }
        if (p >= end) {
            return 0;
        }
        if (reserve(b, 13) < 0) {
            return -1;
        }
        unsigned char c = *p;
        if (c == '"') {
            b->p[b->len++] = '"';
            r->p = p + 1;
            return 1;
        }
        if (c < 0x20) {
            return 0; /* a raw control character: not JSON */
        }
        if (c == 0x7f) {
            out_char(b, c);
            p++;
            continue;
        }
        if (c == '\\') {
            if (end - p < 2) {
                return 0;
            }
            unsigned char e = p[1];
            p += 2;
            Py_UCS4 cp;
            switch (e) {
            case '"': cp = '"'; break;
            case '\\': cp = '\\'; break;
            case '/': cp = '/'; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u': {
                r->p = p;
                if (!read_u4(r, &cp)) {
                    return 0;
                }
                p = r->p;
                if (cp >= 0xdc00 && cp <= 0xdfff) {
                    return 0; /* a lone low surrogate */
                }
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    Py_UCS4 lo;
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u') {
                        return 0;
                    }
                    r->p = p + 2;
                    if (!read_u4(r, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                        return 0;
                    }
                    p = r->p;
                    cp = 0x10000 + (((cp - 0xd800) << 10) | (lo - 0xdc00));
                }
                break;
            }
            default:
                return 0;
            }
            out_char(b, cp);
            continue;
        }
        /* UTF-8, strictly: no overlong forms, no surrogates, nothing beyond U+10FFFF */
        Py_UCS4 cp;
        Py_ssize_t need;
        if (c >= 0xc2 && c <= 0xdf) {
            cp = c & 0x1f;
            need = 1;
        }
        else if (c >= 0xe0 && c <= 0xef) {
            cp = c & 0x0f;
            need = 2;
        }
        else if (c >= 0xf0 && c <= 0xf4) {
            cp = c & 0x07;
            need = 3;
        }
        else {
            return 0;
        }
        if (end - p <= need) {
            return 0;
        }
        for (Py_ssize_t k = 1; k <= need; k++) {
            if ((p[k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (p[k] & 0x3f);
        }
        if ((need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff))) {
            return 0;
        }
        p += need + 1;
        out_char(b, cp);
    }
}

/* A number token: integers of up to 18 digits are copied ("-0" becomes "0"), others re-written as the
 * float json.loads makes of them; id_out, when given, receives an integer's value. */
static int
tc_number(Reader *r, long long *id_out, int *is_int)
{
    const unsigned char *start = r->p, *p = r->p, *end = r->end;
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    const unsigned char *digits = p;
    if (p >= end) {
        return 0;
    }
    if (*p == '0') {
        p++;
    }
    else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }
    else {
        return 0;
    }
    Py_ssize_t ndig = p - digits;
    int frac = 0;
    if (p < end && *p == '.') {
        frac = 1;
        p++;
        const unsigned char *f = p;
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
        if (p == f) {
            return 0;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        frac = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }
        const unsigned char *x = p;
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
        if (p == x) {
            return 0;
        }
    }
    r->p = p;
    if (!frac) {
        if (ndig > 18) {
            return 0; /* possibly beyond 64 bits: the parser's path keeps such numbers exactly */
        }
        long long v = 0;
        for (const unsigned char *d = digits; d < p; d++) {
            v = v * 10 + (*d - '0');
        }
        if (neg) {
            v = -v;
        }
        if (id_out != NULL) {
            *id_out = v;
            *is_int = 1;
        }
        if (v == 0) {
            return buf_put(r->out, "0", 1) < 0 ? -1 : 1;
        }
        return buf_put(r->out, (const char *)start, p - start) < 0 ? -1 : 1;
    }
    /* a float: the text is ASCII and short enough to copy for the C parser */
    char tmp[400];
    Py_ssize_t n = p - start;
    if (n >= (Py_ssize_t)sizeof(tmp)) {
        return 0;
    }
    memcpy(tmp, start, (size_t)n);
    tmp[n] = '\0';
    char *endp = NULL;
    double d = PyOS_string_to_double(tmp, &endp, NULL);
    if (d == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (endp != tmp + n || !Py_IS_FINITE(d)) {
        return 0;
    }
    char *txt = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (txt == NULL) {
        return -1;
    }
    int rc = buf_put(r->out, txt, (Py_ssize_t)strlen(txt));
    PyMem_Free(txt);
    return rc < 0 ? -1 : 1;
}

static int tc_value(Reader *r, int depth, long long *id_out, int *is_int);

static int
push_key(Reader *r, Py_ssize_t start, Py_ssize_t len, Py_ssize_t base)
{
    Buf *b = r->out;
    for (Py_ssize_t k = base; k < r->nkeys; k += 2) {
        if (r->keys[k + 1] == len && memcmp(b->p + r->keys[k], b->p + start, (size_t)len) == 0) {
            return 0; /* a repeated key */
        }
    }
    if (r->nkeys + 2 > r->capkeys) {
        Py_ssize_t cap = r->capkeys ? r->capkeys * 2 : 512;
        Py_ssize_t *k = PyMem_Realloc(r->keys, (size_t)cap * sizeof(Py_ssize_t));
        if (k == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        r->keys = k;
        r->capkeys = cap;
    }
    r->keys[r->nkeys++] = start;
    r->keys[r->nkeys++] = len;
    return 1;
}

/* An object at r->p ('{'). With id_out, the value of its key "id" is read as an event id: an integer
 * (given back with *is_int set), null, or else the page is not vouched for. */
static int
tc_object(Reader *r, int depth, long long *id_out, int *is_int)
{
    Buf *b = r->out;
    Py_ssize_t base = r->nkeys;
    int rc = 1;
    r->p++;
    if (reserve(b, 1) < 0) {
        return -1;
    }
    b->p[b->len++] = '{';
    skip_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        if (reserve(b, 1) < 0) {
            return -1;
        }
        b->p[b->len++] = '}';
        return 1;
    }
    for (Py_ssize_t n = 0;; n++) {
        if (n >= MAX_KEYS || r->p >= r->end || *r->p != '"') {
            rc = 0;
            break;
        }
        Py_ssize_t kstart = b->len;
        if ((rc = tc_string(r)) <= 0) {
            break;
        }
        Py_ssize_t klen = b->len - kstart;
        if ((rc = push_key(r, kstart, klen, base)) <= 0) {
            break;
        }
        skip_ws(r);
        if (r->p >= r->end || *r->p != ':') {
            rc = 0;
            break;
        }
        r->p++;
        skip_ws(r);
        if (reserve(b, 2) < 0) {
            rc = -1;
            break;
        }
        PUT_LIT(b, ": ");
        int is_id = id_out != NULL && klen == 4 && memcmp(b->p + kstart, "\"id\"", 4) == 0;
        if (is_id) {
            if (r->p < r->end && (*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))) {
                rc = tc_number(r, id_out, is_int);
                if (rc > 0 && !*is_int) {
                    rc = 0; /* a float id: left to the parser's path */
                }
            }
            else if (r->end - r->p >= 4 && memcmp(r->p, "null", 4) == 0) {
                rc = tc_value(r, depth + 1, NULL, NULL);
            }
            else {
                rc = 0;
            }
        }
        else {
            rc = tc_value(r, depth + 1, NULL, NULL);
        }
        if (rc <= 0) {
            break;
        }
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            skip_ws(r);
            if (reserve(b, 2) < 0) {
                rc = -1;
                break;
            }
            PUT_LIT(b, ", ");
            continue;
        }
        if (r->p < r->end && *r->p == '}') {
            r->p++;
            if (reserve(b, 1) < 0) {
                rc = -1;
                break;
            }
            b->p[b->len++] = '}';
            rc = 1;
            break;
        }
        rc = 0;
        break;
    }
    r->nkeys = base;
    return rc;
}

static int
tc_array(Reader *r, int depth)
{
    Buf *b = r->out;
    r->p++;
    if (reserve(b, 1) < 0) {
        return -1;
    }
    b->p[b->len++] = '[';
    skip_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        if (reserve(b, 1) < 0) {
            return -1;
        }
        b->p[b->len++] = ']';
        return 1;
    }
    for (;;) {
        int rc = tc_value(r, depth + 1, NULL, NULL);
        if (rc <= 0) {
            return rc;
        }
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            skip_ws(r);
            if (reserve(b, 2) < 0) {
                return -1;
            }
            PUT_LIT(b, ", ");
            continue;
        }
        if (r->p < r->end && *r->p == ']') {
            r->p++;
            if (reserve(b, 1) < 0) {
                return -1;
            }
            b->p[b->len++] = ']';
            return 1;
        }
        return 0;
    }
}

static int
tc_value(Reader *r, int depth, long long *id_out, int *is_int)
{
    if (r->p >= r->end || depth >= MAX_DEPTH) {
        return 0;
    }
    unsigned char c = *r->p;
    switch (c) {
    case '"':
        return tc_string(r);
    case '{':
        return tc_object(r, depth, id_out, is_int);
    case '[':
        return tc_array(r, depth);
    case 't':
        if (r->end - r->p >= 4 && memcmp(r->p, "true", 4) == 0) {
            r->p += 4;
            return buf_put(r->out, "true", 4) < 0 ? -1 : 1;
        }
        return 0;
    case 'f':
        if (r->end - r->p >= 5 && memcmp(r->p, "false", 5) == 0) {
            r->p += 5;
            return buf_put(r->out, "false", 5) < 0 ? -1 : 1;
        }
        return 0;
    case 'n':
        if (r->end - r->p >= 4 && memcmp(r->p, "null", 4) == 0) {
            r->p += 4;
            return buf_put(r->out, "null", 4) < 0 ? -1 : 1;
        }
        return 0;
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            return tc_number(r, NULL, NULL);
        }
        return 0;
    }
}

/* The events array at r->p ('['): each element an object, written to r->out joined by newlines; ends and
 * ids get one item per event. */
static int
tc_events(Reader *r, PyObject *ends, PyObject *ids)
{
    Buf *b = r->out;
    r->p++;
    skip_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return 1;
    }
    for (Py_ssize_t i = 0;; i++) {
        if (r->p >= r->end || *r->p != '{') {
            return 0; /* not an object: the parser's path quarantines it */
        }
        if (i && buf_put(b, "\n", 1) < 0) {
            return -1;
        }
        long long id = 0;
        int is_int = 0;
        int rc = tc_object(r, 1, &id, &is_int);
        if (rc <= 0) {
            return rc;
        }
        PyObject *end = PyLong_FromSsize_t(b->len);
        PyObject *idv = is_int ? PyLong_FromLongLong(id) : Py_NewRef(Py_None);
        if (end == NULL || idv == NULL || PyList_Append(ends, end) < 0 || PyList_Append(ids, idv) < 0) {
            Py_XDECREF(end);
            Py_XDECREF(idv);
            return -1;
        }
        Py_DECREF(end);
        Py_DECREF(idv);
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            skip_ws(r);
            continue;
        }
        if (r->p < r->end && *r->p == ']') {
            r->p++;
            return 1;
        }
        return 0;
    }
}

static PyObject *
jsonenc_transcode_page(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    Buf out = {NULL, 0, 0}, scratch = {NULL, 0, 0};
    Reader r = {(const unsigned char *)view.buf, (const unsigned char *)view.buf + view.len, &scratch,
                NULL, 0, 0};
    PyObject *ends = PyList_New(0), *ids = PyList_New(0), *result = NULL;
    Py_ssize_t ev_start = -1, ev_end = -1;
    int rc = ends != NULL && ids != NULL ? 1 : -1;
    if (rc > 0 && view.len > (1 << 16)) {
        rc = buf_grow(&out, view.len) < 0 ? -1 : 1; /* the events' text is about as long as the body */
    }
    if (rc > 0) {
        skip_ws(&r);
        rc = r.p < r.end && *r.p == '{' ? 1 : 0;
    }
    if (rc > 0) {
        r.p++;
        skip_ws(&r);
        if (r.p < r.end && *r.p == '}') {
            rc = 0; /* no events at all: the parser's path reports it */
        }
    }
    /* the envelope: keys are checked like any object's; "events" is transcoded into `out`, every other
     * value only checked (written to the scratch buffer) */
    while (rc > 0) {
        r.out = &scratch;
        scratch.len = 0;
        if (r.p >= r.end || *r.p != '"') {
            rc = 0;
            break;
        }
        if ((rc = tc_string(&r)) <= 0) {
            break;
        }
        int is_events = scratch.len == 8 && memcmp(scratch.p, "\"events\"", 8) == 0;
        skip_ws(&r);
        if (r.p >= r.end || *r.p != ':') {
            rc = 0;
            break;
        }
        r.p++;
        skip_ws(&r);
        if (is_events) {
            if (ev_start >= 0 || r.p >= r.end || *r.p != '[') {
                rc = 0; /* a second "events", or not a list: the parser's path decides */
                break;
            }
            ev_start = r.p - (const unsigned char *)view.buf;
            r.out = &out;
            rc = tc_events(&r, ends, ids);
            ev_end = r.p - (const unsigned char *)view.buf;
        }
        else {
            rc = tc_value(&r, 1, NULL, NULL);
        }
        if (rc <= 0) {
            break;
        }
        skip_ws(&r);
        if (r.p < r.end && *r.p == ',') {
            r.p++;
            skip_ws(&r);
            continue;
        }
        if (r.p < r.end && *r.p == '}') {
            r.p++;
            skip_ws(&r);
            rc = r.p == r.end && ev_start >= 0 ? 1 : 0;
            break;
        }
        rc = 0;
    }
    if (rc > 0) {
        PyObject *text = buf_to_str(&out);
        if (text != NULL) {
            result = Py_BuildValue("(NOOnn)", text, ends, ids, ev_start, ev_end);
        }
    }
    else if (rc == 0) {
        result = Py_NewRef(Py_None);
    }
    Py_XDECREF(ends);
    Py_XDECREF(ids);
    PyMem_Free(out.p);
    PyMem_Free(scratch.p);
    PyMem_Free(r.keys);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef jsonenc_methods[] = {
    {"dumps", jsonenc_dumps, METH_O,
     "dumps(value) -> json.dumps(value), or None when value is outside the parsed-JSON domain."},
    {"dumps_lines", jsonenc_dumps_lines, METH_O,
     "dumps_lines(list) -> '\\n'.join(map(json.dumps, list)), or None when any item is outside the "
     "parsed-JSON domain."},
    {"transcode_page", jsonenc_transcode_page, METH_O,
     "transcode_page(body) -> (text, ends, ids, events_start, events_end): each event of an API page as "
     "json.dumps(json.loads(event)) joined by newlines, where each ends in text, its integer 'id' or None, "
     "and the byte span of the events array in body; or None where the page is not plain enough to vouch "
     "for (the caller then parses it)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef jsonenc_module = {
    PyModuleDef_HEAD_INIT,
    "siemconn.queue._jsonenc",
    "json.dumps for parsed JSON values, in one C pass (see siemconn.queue.encoder).",
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
