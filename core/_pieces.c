/*
 * core/_pieces.c -- a stored manifest's pieces decoded in one pass.
 *
 * A large manifest is stored compactly (core/objects.py, ``_encode_manifest``):
 * per piece its chunk number, its length and its *gap*, the rows it skips
 * after where the previous piece of the same chunk ended (0 for a chunk's
 * first piece), each column in the narrowest of 2, 4 or 8 bytes that holds
 * it. A piece's start is then that end plus the gap: a running end per
 * chunk, one pass in table order. NumPy has no segmented running sum, so the
 * vectorised form sorted the pieces by chunk and made a dozen passes over
 * them (15-30 ms for a ten-times re-uploaded 1M-row version of ~300,000
 * pieces, on every first read of it in a process); this costs ~2 ms, and
 * gives the pieces grouped by chunk (a counting sort) on the way
 * (docs/decisions/0016).
 *
 * Python API:
 *   decode(body, offset, n, chunks, widths, chunk, start, length, pos, order) -> None
 *     ``body``: the decompressed bytes; the three columns (chunk number,
 *     gap, length) follow each other from ``offset``, ``n`` values each,
 *     of ``widths`` bytes (a 3-byte string of 2, 4 or 8), little-endian,
 *     signed. Fills the writable int64 buffers of ``n`` values: ``chunk``,
 *     ``start``, ``length``, ``pos`` (where each piece starts in the table)
 *     and ``order`` (piece indices grouped by chunk number, each chunk's in
 *     table order). A damaged body (too short, a chunk number out of range,
 *     a negative start or length, an overflow) is a ValueError.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

static inline int64_t get(const unsigned char *p, int w) {
    if (w == 2) {
        int16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    if (w == 4) {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

static PyObject *decode(PyObject *self, PyObject *args) {
    Py_buffer body, out[5];
    Py_ssize_t at, n, k;
    const char *widths;
    Py_ssize_t nw;
    memset(&body, 0, sizeof body);
    memset(out, 0, sizeof out);
    if (!PyArg_ParseTuple(args, "y*nnns#w*w*w*w*w*", &body, &at, &n, &k, &widths, &nw, &out[0],
                          &out[1], &out[2], &out[3], &out[4]))
        return NULL;
    PyObject *result = NULL;
    int64_t *end = NULL, *next = NULL;
    int w[3];
    int ok = nw == 3 && at >= 0 && n >= 0 && k >= 0;
    for (int i = 0; ok && i < 3; i++) {
        w[i] = widths[i];
        ok = w[i] == 2 || w[i] == 4 || w[i] == 8;
    }
    if (ok) ok = n <= PY_SSIZE_T_MAX / 8;
    for (int i = 0; ok && i < 5; i++) ok = out[i].len == n * 8;
    if (ok) ok = body.len >= at && (body.len - at) / (w[0] + w[1] + w[2]) >= n;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "damaged manifest: columns do not fit");
        goto done;
    }
    end = PyMem_RawCalloc((size_t)k + 1, sizeof(int64_t));
    next = PyMem_RawCalloc((size_t)k + 1, sizeof(int64_t));
    if (!end || !next) {
        PyErr_NoMemory();
        goto done;
    }
    const unsigned char *pc = (const unsigned char *)body.buf + at;
    const unsigned char *pg = pc + n * w[0], *pl = pg + n * w[1];
    int64_t *chunk = out[0].buf, *start = out[1].buf, *length = out[2].buf, *pos = out[3].buf,
            *order = out[4].buf;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    int64_t row = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t x = get(pc + i * w[0], w[0]), g = get(pg + i * w[1], w[1]),
                len = get(pl + i * w[2], w[2]);
        /* a damaged body must not make a negative start, or overflow */
        if (x < 0 || x >= k || len < 0 || (g > 0 && end[x] > INT64_MAX - g) ||
            end[x] + g < 0 || end[x] + g > INT64_MAX - len || row > INT64_MAX - len) {
            bad = 1;
            break;
        }
        chunk[i] = x;
        length[i] = len;
        start[i] = end[x] + g;
        end[x] = start[i] + len;
        pos[i] = row;
        row += len;
        next[x + 1]++;
    }
    if (!bad) {
        /* counting sort: where each chunk's group begins, then scatter */
        for (Py_ssize_t c = 0; c < k; c++) next[c + 1] += next[c];
        for (Py_ssize_t i = 0; i < n; i++) order[next[chunk[i]]++] = i;
    }
    Py_END_ALLOW_THREADS
    if (bad)
        PyErr_SetString(PyExc_ValueError,
                        "damaged manifest: a chunk number, start or length out of range");
    else
        result = Py_NewRef(Py_None);
done:
    PyMem_RawFree(end);
    PyMem_RawFree(next);
    PyBuffer_Release(&body);
    for (int i = 0; i < 5; i++) PyBuffer_Release(&out[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS, "A stored manifest's piece columns, in one pass."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pieces", NULL, -1, methods};

PyMODINIT_FUNC PyInit__pieces(void) { return PyModule_Create(&module); }
