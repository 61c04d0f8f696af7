/* siemconn.events._transcode: an API page's text -> json.dumps of each event, without building objects.
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
#include "_jsonbuf.h"

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
transcode_page_impl(PyObject *Py_UNUSED(module), PyObject *arg)
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

static PyMethodDef transcode_methods[] = {
    {"transcode_page", transcode_page_impl, METH_O,
     "transcode_page(body) -> (text, ends, ids, events_start, events_end): each event of an API page as "
     "json.dumps(json.loads(event)) joined by newlines, where each ends in text, its integer 'id' or None, "
     "and the byte span of the events array in body; or None where the page is not plain enough to vouch "
     "for (the caller then parses it)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef transcode_module = {
    PyModuleDef_HEAD_INIT,
    "siemconn.events._transcode",
    "An API page's text -> json.dumps of each event, without building objects (see siemconn.events.transcode).",
    0,
    transcode_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__transcode(void)
{
    return PyModuleDef_Init(&transcode_module);
}
