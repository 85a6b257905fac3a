/*
 * features/compare/_intervals.c -- the rows two manifests take from the same
 * stored rows (compare's rule 1), by one merge of their pieces.
 *
 * Why C: each side is a list of pieces (chunk, start, length, table
 * position); both sorted by (chunk, start), and within a chunk a side's
 * pieces never overlap (``align`` checks this and handles other chunks row
 * by row). The shared rows are then the intersections met by walking both
 * lists once, like merging two sorted lists. NumPy has no merge: the
 * vectorised form (binary searches, a dozen gathers over every piece) cost
 * ~55 ms for two ten-times re-uploaded 1M-row versions of ~300,000 pieces
 * each; this walk costs ~2 ms (docs/decisions/0016).
 *
 * Python API (``walk``, the usual case, is described above it):
 *   intersect(bo, bc, bs, bl, bp, ho, hc, hs, hl, hp) -> (base_pos, head_pos, length)
 *     ``bo``/``ho``: each side's piece indices in (chunk, start) order;
 *     ``bc, bs, bl, bp`` / ``hc, hs, hl, hp``: each side's chunk number,
 *     start in the chunk, length and table position per piece. All int64
 *     buffers. Returns three bytes objects of little-endian int64: one
 *     matched run a value, in (chunk, start) order.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* both functions take ten int64 buffers: read them, and let them go */
static int buffers(PyObject *args, Py_buffer v[10]) {
    memset(v, 0, 10 * sizeof v[0]);
    return PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*y*", &v[0], &v[1], &v[2], &v[3], &v[4],
                            &v[5], &v[6], &v[7], &v[8], &v[9]);
}

static void release(Py_buffer v[10]) {
    for (int k = 0; k < 10; k++) PyBuffer_Release(&v[k]);
}

static PyObject *intersect(PyObject *self, PyObject *args) {
    Py_buffer v[10];
    if (!buffers(args, v)) return NULL;
    PyObject *result = NULL;
    int64_t *out = NULL, *ob = NULL, *oh = NULL, *on = NULL;
    Py_ssize_t nb = v[0].len / 8, nh = v[5].len / 8, pieces_b = v[1].len / 8,
               pieces_h = v[6].len / 8, n = 0;
    for (int k = 1; k < 5; k++) {
        if (v[k].len / 8 != pieces_b || v[k + 5].len / 8 != pieces_h) {
            PyErr_SetString(PyExc_ValueError, "piece columns of different lengths");
            goto done;
        }
    }
    /* each step emits at most one run and moves past one piece */
    Py_ssize_t cap = nb + nh + 1;
    out = PyMem_RawMalloc((size_t)cap * 3 * sizeof(int64_t));
    if (!out) {
        PyErr_NoMemory();
        goto done;
    }
    ob = out;
    oh = out + cap;
    on = out + 2 * cap;
    const int64_t *bo = v[0].buf, *bc = v[1].buf, *bs = v[2].buf, *bl = v[3].buf, *bp = v[4].buf;
    const int64_t *ho = v[5].buf, *hc = v[6].buf, *hs = v[7].buf, *hl = v[8].buf, *hp = v[9].buf;
    int bad_index = 0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t i = 0, j = 0;
    while (i < nb && j < nh) {
        int64_t x = bo[i], y = ho[j];
        if (x < 0 || x >= pieces_b || y < 0 || y >= pieces_h) {
            bad_index = 1;
            break;
        }
        if (bc[x] != hc[y]) {
            if (bc[x] < hc[y]) i++;
            else j++;
            continue;
        }
        int64_t b_end = bs[x] + bl[x], h_end = hs[y] + hl[y];
        int64_t lo = bs[x] > hs[y] ? bs[x] : hs[y];
        int64_t hi = b_end < h_end ? b_end : h_end;
        if (hi > lo) {
            ob[n] = bp[x] + lo - bs[x];
            oh[n] = hp[y] + lo - hs[y];
            on[n] = hi - lo;
            n++;
        }
        if (b_end <= h_end) i++;
        else j++;
    }
    Py_END_ALLOW_THREADS
    if (bad_index) {
        PyErr_SetString(PyExc_IndexError, "piece index out of range");
        goto done;
    }
    result = Py_BuildValue("(y#y#y#)", (const char *)ob, n * 8, (const char *)oh, n * 8,
                           (const char *)on, n * 8);
done:
    PyMem_RawFree(out);
    release(v);
    return result;
}

/*
 * walk(b_order, b_bounds, b_start, b_len, b_pos, h_chunk, h_start, h_len, h_pos, h_to_b)
 *   -> (base_pos, head_pos, length) | None
 *
 * Rule 1 in one pass over head's pieces in table order, for the usual case
 * where, in every chunk both sides use, each side's pieces ascend and never
 * overlap (versions made by imports, re-uploads, appends and merges): a
 * cursor per base chunk only moves forward. The runs come out in head order,
 * those that continue each other on both sides already joined (what
 * ``_joined`` makes of ``intersect``'s runs), so nothing is sorted.
 * ``b_order``: base's piece indices grouped by base chunk number, group g
 * being ``b_order[b_bounds[g]:b_bounds[g + 1]]`` in table order;
 * ``h_chunk``: head's chunk number per piece; ``h_to_b``: for each head
 * chunk number, the same chunk's base number or -1. Returns None when a
 * shared chunk's pieces do not ascend on a side (the caller takes the
 * general path).
 */
static PyObject *walk(PyObject *self, PyObject *args) {
    Py_buffer v[10];
    if (!buffers(args, v)) return NULL;
    PyObject *result = NULL;
    int64_t *out = NULL, *cur = NULL, *last = NULL;
    unsigned char *bad = NULL;
    Py_ssize_t nb = v[0].len / 8, kb = v[1].len / 8 - 1, pb = v[2].len / 8;
    Py_ssize_t nh = v[5].len / 8, kh = v[9].len / 8, n = 0;
    if (kb < 0 || v[3].len / 8 != pb || v[4].len / 8 != pb || v[6].len / 8 != nh ||
        v[7].len / 8 != nh || v[8].len / 8 != nh) {
        PyErr_SetString(PyExc_ValueError, "piece columns of different lengths");
        goto done;
    }
    const int64_t *bo = v[0].buf, *bb = v[1].buf, *bs = v[2].buf, *bl = v[3].buf, *bp = v[4].buf;
    const int64_t *hc = v[5].buf, *hs = v[6].buf, *hl = v[7].buf, *hp = v[8].buf, *map = v[9].buf;
    Py_ssize_t cap = nb + nh + 1;
    out = PyMem_RawMalloc((size_t)cap * 3 * sizeof(int64_t));
    cur = PyMem_RawMalloc((size_t)(kb + 1) * sizeof(int64_t));
    last = PyMem_RawMalloc((size_t)(kh + 1) * sizeof(int64_t));
    bad = PyMem_RawCalloc((size_t)(kb + 1), 1);
    if (!out || !cur || !last || !bad) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t *ob = out, *oh = out + cap, *on = out + 2 * cap;
    int error = 0, general = 0;
    Py_BEGIN_ALLOW_THREADS
    /* base: groups in range, pieces in range, and which groups ascend */
    if (bb[0] != 0 || bb[kb] != nb) error = 1;
    for (Py_ssize_t g = 0; g < kb && !error; g++) {
        if (bb[g + 1] < bb[g]) { error = 1; break; }
        cur[g] = bb[g];
        int64_t end = INT64_MIN;
        for (int64_t k = bb[g]; k < bb[g + 1]; k++) {
            int64_t x = bo[k];
            if (x < 0 || x >= pb) { error = 1; break; }
            if (bl[x] <= 0) continue;
            if (bs[x] < end) bad[g] = 1;
            end = bs[x] + bl[x];
        }
    }
    for (Py_ssize_t c = 0; c < kh && !error; c++) {
        if (map[c] < -1 || map[c] >= kb) error = 1;
        else if (map[c] >= 0 && bad[map[c]]) general = 1;
        last[c] = INT64_MIN;
    }
    for (Py_ssize_t i = 0; i < nh && !error && !general; i++) {
        int64_t c = hc[i], s = hs[i], e = hs[i] + hl[i];
        if (c < 0 || c >= kh) { error = 1; break; }
        int64_t g = map[c];
        if (g < 0 || hl[i] <= 0) continue;
        if (s < last[c]) { general = 1; break; }
        last[c] = e;
        int64_t k = cur[g], hi = bb[g + 1];
        while (k < hi) {
            int64_t x = bo[k], b0 = bs[x], b1 = bs[x] + bl[x];
            if (b1 <= s || b1 <= b0) { k++; continue; } /* behind, or empty */
            if (b0 >= e) break;
            int64_t lo = b0 > s ? b0 : s, up = b1 < e ? b1 : e;
            if (up > lo) {
                int64_t rb = bp[x] + lo - b0, rh = hp[i] + lo - s;
                if (n && ob[n - 1] + on[n - 1] == rb && oh[n - 1] + on[n - 1] == rh) {
                    on[n - 1] += up - lo;
                } else {
                    ob[n] = rb; oh[n] = rh; on[n] = up - lo; n++;
                }
            }
            if (b1 <= e) k++;
            else break;
        }
        cur[g] = k;
    }
    Py_END_ALLOW_THREADS
    if (error) {
        PyErr_SetString(PyExc_IndexError, "piece or chunk number out of range");
        goto done;
    }
    if (general) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = Py_BuildValue("(y#y#y#)", (const char *)ob, n * 8, (const char *)oh, n * 8,
                           (const char *)on, n * 8);
done:
    PyMem_RawFree(out);
    PyMem_RawFree(cur);
    PyMem_RawFree(last);
    PyMem_RawFree(bad);
    release(v);
    return result;
}

static PyMethodDef methods[] = {
    {"intersect", intersect, METH_VARARGS,
     "Matched runs of two sides' pieces, each sorted by (chunk, start)."},
    {"walk", walk, METH_VARARGS,
     "Rule 1 in one pass over head's pieces, or None where pieces do not ascend."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_intervals", NULL, -1, methods};

PyMODINIT_FUNC PyInit__intervals(void) { return PyModule_Create(&module); }
