/*
 * features/imports/_records.c -- split CSV bytes into records and hash each.
 *
 * Why C: a re-upload's unchanged rows are recognised by the hash of their
 * bytes (see features/imports/lines.py), which needs every record of a file
 * of millions of lines found and hashed. Python's csv module runs ~1 us a
 * field; this runs at memory speed, in one call per block, with the GIL
 * released.
 *
 * Records are found the way Arrow's CSV parser (pyarrow.csv, which parses
 * the same file on the slow path) finds them, with quote '"', doubled quotes
 * as the escape and newlines allowed in quoted values:
 *   - a quote opens a quoted value only at the start of a field; elsewhere
 *     it is an ordinary character;
 *   - inside a quoted value, '""' is a quote and '"' closes the value;
 *     anything after the closing quote up to the delimiter is ordinary text;
 *   - outside quotes, '\n', '\r' and "\r\n" end a record; empty records
 *     (blank lines) are skipped.
 * The caller still checks the count against Arrow's where it matters.
 *
 * The hash is XXH3-128 (xxHash 0.8, vendored in vendor/xxhash.h, BSD-2):
 * ~10x BLAKE3's speed on short inputs, and 128 bits make an accidental
 * collision among a file's lines as unlikely as one among row hashes. It is
 * a cache key, never an object id (object ids stay BLAKE3).
 *
 * With ``secret`` (bytes, at least 136; the installation's, derived from
 * its key), the hash is XXH3-128 keyed with it (XXH3_128bits_withSecret):
 * who does not know the secret cannot craft two lines that collide.
 *
 * Python API:
 *   split_hash(buf, start, stop, final, delimiter, secret=None) -> (hashes, spans, next)
 *     Records of buf[start:...] that end before ``stop`` (or at the end of
 *     buf when ``final``): ``hashes`` 16 bytes a record (big-endian XXH3-128
 *     high then low), ``spans`` two little-endian int64 a record (start, end
 *     offsets into buf, terminator excluded), ``next`` where the first record
 *     not returned starts.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define XXH_INLINE_ALL
#include "vendor/xxhash.h"

enum { FIELD_START, UNQUOTED, QUOTED, AFTER_QUOTE };


typedef struct {
    uint8_t *hashes;
    int64_t *spans;
    Py_ssize_t n, cap;
    const uint8_t *secret; /* NULL: XXH3's default secret */
    size_t secret_len;
} rec_out;

static int rec_push(rec_out *o, const uint8_t *buf, Py_ssize_t s, Py_ssize_t e) {
    if (o->n == o->cap) {
        Py_ssize_t cap = o->cap ? o->cap * 2 : 4096;
        uint8_t *h = PyMem_RawRealloc(o->hashes, (size_t)cap * 16);
        if (!h) return -1;
        o->hashes = h;
        int64_t *sp = PyMem_RawRealloc(o->spans, (size_t)cap * 2 * sizeof(int64_t));
        if (!sp) return -1;
        o->spans = sp;
        o->cap = cap;
    }
    XXH128_hash_t h = o->secret
        ? XXH3_128bits_withSecret(buf + s, (size_t)(e - s), o->secret, o->secret_len)
        : XXH3_128bits(buf + s, (size_t)(e - s));
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(o->hashes + o->n * 16, c.digest, 16);
    o->spans[2 * o->n] = (int64_t)s;
    o->spans[2 * o->n + 1] = (int64_t)e;
    o->n++;
    return 0;
}

/* The first '\n', '\r' or '"' in buf[i:stop], or stop: 16 bytes a step
 * where SSE2 is there (every x86-64), since nearly every byte is none. */
static Py_ssize_t rec_find_special(const uint8_t *buf, Py_ssize_t i, Py_ssize_t stop) {
#if defined(__SSE2__)
    const __m128i nl = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r'), qt = _mm_set1_epi8('"');
    while (i + 16 <= stop) {
        __m128i v = _mm_loadu_si128((const __m128i *)(buf + i));
        int m = _mm_movemask_epi8(_mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, nl), _mm_cmpeq_epi8(v, cr)), _mm_cmpeq_epi8(v, qt)));
        if (m) return i + __builtin_ctz((unsigned)m);
        i += 16;
    }
#endif
    for (; i < stop; i++) {
        uint8_t c = buf[i];
        if (c == '\n' || c == '\r' || c == '"') return i;
    }
    return stop;
}

/* Where the record starting at rs ends (its terminator), or stop when it does
 * not end before stop: the full rules above, field by field. */
static Py_ssize_t rec_exact_end(const uint8_t *buf, Py_ssize_t rs, Py_ssize_t stop,
                                uint8_t delim) {
    int state = FIELD_START;
    for (Py_ssize_t i = rs; i < stop; i++) {
        uint8_t c = buf[i];
        if (state == QUOTED) {
            if (c == '"') state = AFTER_QUOTE;
        } else if (c == '"' && (state == FIELD_START || state == AFTER_QUOTE)) {
            state = QUOTED; /* opens a value, or a doubled quote inside one */
        } else if (c == delim) {
            state = FIELD_START;
        } else if (c == '\n' || c == '\r') {
            return i;
        } else {
            state = UNQUOTED;
        }
    }
    return stop;
}

/* Scan buf[start:stop]; returns where the first unfinished record starts, or
 * -1 on memory failure. A record without a quote ends at its first newline,
 * found 16 bytes at a time; a record with one is walked field by field. */
static Py_ssize_t rec_scan(const uint8_t *buf, Py_ssize_t len, Py_ssize_t start,
                           Py_ssize_t stop, int final, uint8_t delim, rec_out *o) {
    Py_ssize_t rs = start; /* start of the current record */
    Py_ssize_t i = start;
    while (i < stop) {
        Py_ssize_t p = rec_find_special(buf, i, stop);
        if (p < stop && buf[p] == '"') p = rec_exact_end(buf, rs, stop, delim);
        if (p == stop) break;
        if (p > rs && rec_push(o, buf, rs, p) < 0) return -1;
        rs = i = p + 1;
    }
    if (final && stop == len && rs < len) {
        if (rec_push(o, buf, rs, len) < 0) return -1;
        rs = len;
    }
    return rs;
}

static PyObject *py_split_hash(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"buf", "start", "stop", "final", "delimiter", "secret", NULL};
    Py_buffer view;
    Py_ssize_t start, stop;
    int final;
    int delim;
    const char *secret = NULL;
    Py_ssize_t secret_len = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*nnpC|z#", kwlist, &view, &start, &stop,
                                     &final, &delim, &secret, &secret_len))
        return NULL;
    if (secret && secret_len < XXH3_SECRET_SIZE_MIN) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "secret must be at least 136 bytes");
        return NULL;
    }
    if (delim < 1 || delim > 127 || delim == '"' || delim == '\n' || delim == '\r') {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "delimiter must be one ASCII character");
        return NULL;
    }
    if (start < 0 || stop < start || stop > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "need 0 <= start <= stop <= len(buf)");
        return NULL;
    }
    rec_out o = {NULL, NULL, 0, 0, (const uint8_t *)secret, (size_t)secret_len};
    Py_ssize_t next;
    Py_BEGIN_ALLOW_THREADS
    next = rec_scan((const uint8_t *)view.buf, view.len, start, stop, final, (uint8_t)delim, &o);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *result = NULL;
    if (next < 0) {
        PyErr_NoMemory();
    } else {
        result = Py_BuildValue("y#y#n", o.n ? (const char *)o.hashes : "", o.n * 16,
                               o.n ? (const char *)o.spans : "",
                               o.n * 2 * (Py_ssize_t)sizeof(int64_t), next);
    }
    PyMem_RawFree(o.hashes);
    PyMem_RawFree(o.spans);
    return result;
}

static PyMethodDef records_methods[] = {
    {"split_hash", (PyCFunction)(void (*)(void))py_split_hash, METH_VARARGS | METH_KEYWORDS,
     "split_hash(buf, start, stop, final, delimiter, secret=None) -> (hashes, spans, next)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef records_module = {
    PyModuleDef_HEAD_INIT, "_records",
    "CSV records found as Arrow finds them, each hashed with XXH3-128.", -1,
    records_methods,
};

PyMODINIT_FUNC PyInit__records(void) { return PyModule_Create(&records_module); }
