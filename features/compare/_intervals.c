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
 * Python API:
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

static PyObject *intersect(PyObject *self, PyObject *args) {
    Py_buffer v[10];
    memset(v, 0, sizeof v);
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*y*", &v[0], &v[1], &v[2], &v[3], &v[4],
                          &v[5], &v[6], &v[7], &v[8], &v[9]))
        return NULL;
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
    for (int k = 0; k < 10; k++) PyBuffer_Release(&v[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"intersect", intersect, METH_VARARGS,
     "Matched runs of two sides' pieces, each sorted by (chunk, start)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_intervals", NULL, -1, methods};

PyMODINIT_FUNC PyInit__intervals(void) { return PyModule_Create(&module); }
