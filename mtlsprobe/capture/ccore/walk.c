/* walk.c: the Walker, a pcap/pcapng file's frames; the twin of CaptureFile._pcap/_pcapng.
 *
 * Walker(capture, stream, head, pcapng, chunk) iterates (timestamp, link type, frame) exactly
 * as capture/pcapfile.py does: the same refills (pcapfile.CHUNK) through stream.read() (so gzip and
 * standard input work as they do there), the same notes on damage, claims offered to the
 * same claimants with the same read buffer, Decryption Secrets Blocks handed to
 * capture._secrets and packet comments set on capture.comment. capture.claimed is
 * brought up to date before each frame is handed out. Every length read from the file is
 * checked before it is used: a record is at most max(262144, snaplen) bytes and never over
 * 64 MiB, a block at most 64 MiB, so the read buffer is bounded by 64 MiB plus one refill.
 * Memory besides: one 32-byte entry per pcapng interface (as the Python list holds them).
 */
#include "walker.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

PyObject *s_read, *s_comment, *s_claimed, *s_progress, *s_position,
    *s_size;

/* --- small helpers ------------------------------------------------------------------ */

/* Append one note (printf-style) to capture.notes. */
int note(Walker *w, const char *fmt, ...)
{
    char text[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    PyObject *s = PyUnicode_FromString(text);
    if (s == NULL)
        return -1;
    int rc = PyList_Append(w->notes, s);
    Py_DECREF(s);
    return rc;
}

/* A block skipped: capture._skip(note), which notes the first few and counts the rest. */
int skip(Walker *w, const char *fmt, ...)
{
    char text[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    PyObject *r = PyObject_CallMethod(w->capture, "_skip", "(s)", text);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* stream.read(n), looping over short reads; fewer bytes only at the end (_read_exact). */
static PyObject *read_exact(Walker *w, Py_ssize_t n)
{
    PyObject *data, *size = PyLong_FromSsize_t(n);
    if (size == NULL)
        return NULL;
    data = PyObject_CallMethodOneArg(w->stream, s_read, size);
    if (data == NULL || !PyBytes_Check(data)) {
        if (data != NULL)
            PyErr_SetString(PyExc_TypeError, "capture stream read() must return bytes");
        Py_XDECREF(data);
        Py_DECREF(size);
        return NULL;
    }
    Py_ssize_t got = PyBytes_GET_SIZE(data);
    while (got != 0 && got < n) {
        PyObject *want = PyLong_FromSsize_t(n - got);
        PyObject *more = want ? PyObject_CallMethodOneArg(w->stream, s_read, want) : NULL;
        Py_XDECREF(want);
        if (more == NULL || !PyBytes_Check(more)) {
            if (more != NULL)
                PyErr_SetString(PyExc_TypeError, "capture stream read() must return bytes");
            Py_XDECREF(more);
            Py_DECREF(data);
            Py_DECREF(size);
            return NULL;
        }
        if (PyBytes_GET_SIZE(more) == 0) {
            Py_DECREF(more);
            break;
        }
        got += PyBytes_GET_SIZE(more);
        PyBytes_ConcatAndDel(&data, more);
        if (data == NULL) {
            Py_DECREF(size);
            return NULL;
        }
    }
    Py_DECREF(size);
    return data;
}

/* buf = buf[pos:] + read_exact(want); pos = 0. */
int refill(Walker *w, Py_ssize_t want)
{
    PyObject *data = read_exact(w, want);
    if (data == NULL)
        return -1;
    Py_ssize_t rest = PyBytes_GET_SIZE(w->buf) - w->pos;
    PyObject *joined;
    if (rest == 0) {
        joined = data;
    } else {
        joined = PyBytes_FromStringAndSize(NULL, rest + PyBytes_GET_SIZE(data));
        if (joined != NULL) {
            memcpy(PyBytes_AS_STRING(joined), PyBytes_AS_STRING(w->buf) + w->pos, (size_t)rest);
            memcpy(PyBytes_AS_STRING(joined) + rest, PyBytes_AS_STRING(data),
                   (size_t)PyBytes_GET_SIZE(data));
        }
        Py_DECREF(data);
        if (joined == NULL)
            return -1;
    }
    Py_SETREF(w->buf, joined);
    w->pos = 0;
    return 0;
}

/* capture.claimed = what the walker claimed, when it changed. */
static int tell_claimed(Walker *w)
{
    if (w->claimed == w->claimed_told)
        return 0;
    PyObject *n = PyLong_FromLongLong(w->claimed);
    if (n == NULL || PyObject_SetAttr(w->capture, s_claimed, n) < 0) {
        Py_XDECREF(n);
        return -1;
    }
    Py_DECREF(n);
    w->claimed_told = w->claimed;
    return 0;
}

/* A claimant took frame number `count` (CaptureFile._took). */
int took(Walker *w, long long count)
{
    w->claimed++;
    if (count & PROGRESS_EVERY)
        return 0;
    /* claimed frames run no Python: let Ctrl-C (KeyboardInterrupt) through now and then */
    if (PyErr_CheckSignals() < 0 || tell_claimed(w) < 0)
        return -1;
    PyObject *hook = PyObject_GetAttr(w->capture, s_progress);
    if (hook == NULL)
        return -1;
    int rc = 0;
    if (hook != Py_None) {
        PyObject *position = PyObject_GetAttr(w->capture, s_position);
        PyObject *size = position ? PyObject_GetAttr(w->capture, s_size) : NULL;
        PyObject *r = size ? PyObject_CallFunctionObjArgs(hook, position, size, NULL) : NULL;
        rc = r == NULL ? -1 : 0;
        Py_XDECREF(r);
        Py_XDECREF(size);
        Py_XDECREF(position);
    }
    Py_DECREF(hook);
    return rc;
}

/* claims.get(buf[at:at + 12]): a borrowed claimant or NULL (error: NULL and set). Claim
 * keys are 12 bytes, so a shorter slice (at the buffer's end) is never one. */
static PyObject *claimant_at(Walker *w, Py_ssize_t at)
{
    if (at < 0 || at + 12 > PyBytes_GET_SIZE(w->buf))
        return NULL;
    PyObject *key = PyBytes_FromStringAndSize(PyBytes_AS_STRING(w->buf) + at, 12);
    if (key == NULL)
        return NULL;
    PyObject *claimant = PyDict_GetItemWithError(w->claims, key);
    Py_DECREF(key);
    return claimant;
}

/* The claimant by the link type's further key offsets (CaptureFile._claimant). */
static PyObject *extra_claimant(Walker *w, Py_ssize_t start, long linktype)
{
    if (PyDict_GET_SIZE(w->claim_extra) == 0)
        return NULL;
    PyObject *lt = PyLong_FromLong(linktype);
    if (lt == NULL)
        return NULL;
    PyObject *offsets = PyDict_GetItemWithError(w->claim_extra, lt);
    Py_DECREF(lt);
    if (offsets == NULL || !PyTuple_Check(offsets))
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(offsets); i++) {
        Py_ssize_t key_at = PyLong_AsSsize_t(PyTuple_GET_ITEM(offsets, i));
        if (key_at == -1 && PyErr_Occurred())
            return NULL;
        PyObject *claimant = claimant_at(w, start + key_at);
        if (claimant != NULL || PyErr_Occurred())
            return claimant;
    }
    return NULL;
}

/* Offer the frame at buf[start:end] to its claimant, if any: 1 taken, 0 not, -1 error. */
int offer(Walker *w, Py_ssize_t key_at, Py_ssize_t start, Py_ssize_t end, double ts,
                 long linktype)
{
    PyObject *claimant = claimant_at(w, start + key_at);
    if (claimant == NULL && !PyErr_Occurred())
        claimant = extra_claimant(w, start, linktype);
    if (claimant == NULL)
        return PyErr_Occurred() ? -1 : 0;
    Py_INCREF(claimant); /* it may leave the claims while it runs */
    if (PyObject_TypeCheck(claimant, &ccore_LeaseType)) { /* no Python call: lease.c */
        int taken = ccore_lease_take(claimant, w->buf, start, end, ts, linktype);
        Py_DECREF(claimant);
        return taken;
    }
    if (PyObject_TypeCheck(claimant, &ccore_ShareType)) {
        int taken = ccore_share_take(claimant, w->buf, start, end, linktype);
        Py_DECREF(claimant);
        return taken;
    }
    PyObject *args[5] = { w->buf, PyLong_FromSsize_t(start), PyLong_FromSsize_t(end),
                          PyFloat_FromDouble(ts), PyLong_FromLong(linktype) };
    PyObject *r = NULL;
    if (args[1] && args[2] && args[3] && args[4])
        r = PyObject_Vectorcall(claimant, args, 5, NULL);
    for (int i = 1; i < 5; i++)
        Py_XDECREF(args[i]);
    Py_DECREF(claimant);
    if (r == NULL)
        return -1;
    int taken = PyObject_IsTrue(r);
    Py_DECREF(r);
    return taken;
}

/* 1 when the frame at buf[start:end] is a TCP segment of a connection of another --jobs
 * share (capture.share; partition.share_hash): dropped before it is decoded. */
int other_share(const Walker *w, Py_ssize_t start, Py_ssize_t end, long linktype)
{
    uint32_t hash;
    return ccore_share_hash((const unsigned char *)PyBytes_AS_STRING(w->buf) + start,
                            end - start, linktype, &hash)
           && (long)(hash % (uint32_t)w->parts) != w->part;
}

/* The key offset claim_at gives `linktype`, or NO_KEY. */
Py_ssize_t key_offset(Walker *w, long linktype, int *error)
{
    PyObject *lt = PyLong_FromLong(linktype);
    PyObject *v = lt ? PyDict_GetItemWithError(w->claim_at, lt) : NULL;
    Py_XDECREF(lt);
    if (v == NULL || v == Py_None) {
        *error = PyErr_Occurred() != NULL;
        return NO_KEY;
    }
    Py_ssize_t at = PyLong_AsSsize_t(v);
    *error = at == -1 && PyErr_Occurred();
    return at;
}

/* The tuple handed out for one frame. */
PyObject *packet(double ts, long linktype, const char *frame, Py_ssize_t len)
{
    PyObject *t = PyFloat_FromDouble(ts);
    PyObject *lt = PyLong_FromLong(linktype);
    PyObject *f = len > 0 ? PyBytes_FromStringAndSize(frame, len)
                          : PyBytes_FromStringAndSize(NULL, 0);
    PyObject *out = t && lt && f ? PyTuple_Pack(3, t, lt, f) : NULL;
    Py_XDECREF(t);
    Py_XDECREF(lt);
    Py_XDECREF(f);
    return out;
}

/* --- the type ----------------------------------------------------------------------- */

static PyObject *Walker_next(Walker *w)
{
    if (w->buf == NULL) {
        PyErr_SetString(PyExc_TypeError, "Walker was not initialised");
        return NULL;
    }
    if (w->done)
        return NULL;
    if (w->comment_set) { /* the commented packet was handed out: forget its comment */
        w->comment_set = 0;
        if (PyObject_SetAttr(w->capture, s_comment, Py_None) < 0)
            goto fail;
    }
    PyObject *out = w->pcapng ? pcapng_next(w) : pcap_next(w);
    if (out == NULL)
        w->done = 1;
    if (tell_claimed(w) < 0) {
        Py_XDECREF(out);
        goto fail;
    }
    return out;
fail:
    w->done = 1;
    return NULL;
}

/* capture.share: None, or (k, n) to drop the frames of connections of other shares. */
static int read_share(Walker *w, PyObject *capture)
{
    PyObject *share = PyObject_GetAttrString(capture, "share");
    if (share == NULL)
        return -1;
    w->part = w->parts = 0;
    int ok = share == Py_None || PyArg_ParseTuple(share, "ll", &w->part, &w->parts);
    Py_DECREF(share);
    if (ok && w->parts > 0 && (w->part < 0 || w->part >= w->parts)) {
        PyErr_SetString(PyExc_ValueError, "capture.share must be (k, n) with 0 <= k < n");
        ok = 0;
    }
    return ok ? 0 : -1;
}

static int Walker_init(Walker *w, PyObject *args, PyObject *kwds)
{
    PyObject *capture, *stream, *head;
    int pcapng;
    Py_ssize_t chunk = CHUNK;
    static char *kwlist[] = { "capture", "stream", "head", "pcapng", "chunk", NULL };
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOSp|n", kwlist, &capture, &stream, &head,
                                     &pcapng, &chunk))
        return -1;
    if (w->capture != NULL) {
        PyErr_SetString(PyExc_TypeError, "a Walker walks one capture, once");
        return -1;
    }
    if (chunk < 1 || chunk > MAX_BLOCK) {
        PyErr_SetString(PyExc_ValueError, "chunk must be 1 byte to 64 MiB");
        return -1;
    }
    w->chunk = chunk;
    if (read_share(w, capture) < 0)
        return -1;
    PyObject *notes = PyObject_GetAttrString(capture, "notes");
    PyObject *claims = PyObject_GetAttrString(capture, "claims");
    PyObject *claim_at = PyObject_GetAttrString(capture, "claim_at");
    PyObject *claim_extra = PyObject_GetAttrString(capture, "claim_extra");
    PyObject *claimed = PyObject_GetAttrString(capture, "claimed");
    long long base = claimed ? PyLong_AsLongLong(claimed) : -1;
    Py_XDECREF(claimed);
    Py_XSETREF(w->notes, notes);
    Py_XSETREF(w->claims, claims);
    Py_XSETREF(w->claim_at, claim_at);
    Py_XSETREF(w->claim_extra, claim_extra);
    if (!notes || !claims || !claim_at || !claim_extra || PyErr_Occurred())
        return -1;
    if (!PyList_Check(notes) || !PyDict_Check(claims) || !PyDict_Check(claim_at)
        || !PyDict_Check(claim_extra)) {
        PyErr_SetString(PyExc_TypeError, "Walker needs a CaptureFile");
        return -1;
    }
    Py_XSETREF(w->capture, Py_NewRef(capture));
    Py_XSETREF(w->stream, Py_NewRef(stream));
    w->claimed = w->claimed_told = base;
    w->pcapng = pcapng;
    if (pcapng) {
        Py_XSETREF(w->buf, Py_NewRef(head));
        return 0;
    }
    if (pcap_magic(w, head) < 0)
        return -1;
    Py_XSETREF(w->buf, PyBytes_FromStringAndSize(NULL, 0));
    return w->buf == NULL ? -1 : 0;
}

static int Walker_traverse(Walker *w, visitproc visit, void *arg)
{
    Py_VISIT(w->capture);
    Py_VISIT(w->stream);
    Py_VISIT(w->notes);
    Py_VISIT(w->claims);
    Py_VISIT(w->claim_at);
    Py_VISIT(w->claim_extra);
    return 0;
}

static int Walker_clear(Walker *w)
{
    Py_CLEAR(w->capture);
    Py_CLEAR(w->stream);
    Py_CLEAR(w->notes);
    Py_CLEAR(w->claims);
    Py_CLEAR(w->claim_at);
    Py_CLEAR(w->claim_extra);
    Py_CLEAR(w->buf);
    return 0;
}

static void Walker_dealloc(Walker *w)
{
    PyObject_GC_UnTrack(w);
    Walker_clear(w);
    PyMem_Free(w->ifaces);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

PyTypeObject ccore_WalkerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mtlsprobe.capture._ccore.Walker",
    .tp_doc = "Walker(capture, stream, head, pcapng, chunk=131072): a capture file's (time, "
              "link type, frame), as CaptureFile's Python walk gives them (chunk: bytes a "
              "refill reads at least).",
    .tp_basicsize = sizeof(Walker),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Walker_init,
    .tp_dealloc = (destructor)Walker_dealloc,
    .tp_traverse = (traverseproc)Walker_traverse,
    .tp_clear = (inquiry)Walker_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Walker_next,
};

int ccore_walk_init(void)
{
    s_read = PyUnicode_InternFromString("read");
    s_comment = PyUnicode_InternFromString("comment");
    s_claimed = PyUnicode_InternFromString("claimed");
    s_progress = PyUnicode_InternFromString("progress");
    s_position = PyUnicode_InternFromString("position");
    s_size = PyUnicode_InternFromString("size");
    if (!s_read || !s_comment || !s_claimed || !s_progress || !s_position
        || !s_size)
        return -1;
    return PyType_Ready(&ccore_WalkerType);
}
