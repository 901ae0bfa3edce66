/* stream.c: StreamCore, one direction's TCP reassembly; the twin of capture/tcp.py.
 *
 * The same methods and attributes as tcp.TcpReassembler (syn, offset, segment, expects,
 * distance, end_seq, advance, acked, flush, release; started, truncated_at_start, next_offset,
 * fin_offset, gaps, retransmissions, conflicting_bytes, stored, max_bytes, beyond_cap,
 * complete) and the same results, bytes for bytes. Memory per direction: the segments
 * waiting out of order (below max_bytes, as in Python) and at most 2 * RETAIN delivered
 * bytes kept for comparing retransmitted copies.
 */
#include "ccore.h"

#include <structmember.h>

#define MASK 0xFFFFFFFFull
#define HALF 0x80000000ll
#define RETAIN (256 * 1024)
#define UNLIMITED (1ll << 62)

typedef struct { long long off; PyObject *data; } Piece; /* a segment waiting (bytes) */
typedef struct { long long start; Py_ssize_t len, cap; unsigned char *bytes; } Run;

typedef struct {
    PyObject_HEAD
    long long max_bytes, next_offset, fin_offset, high, retransmissions, conflicting, stored;
    char started, truncated_at_start, has_fin;
    uint32_t base;
    PyObject *gaps;     /* list of (offset, length) */
    Piece *pending;     /* sorted by offset, not overlapping */
    Py_ssize_t n_pending, cap_pending;
    Run *runs;          /* delivered bytes kept, oldest first */
    Py_ssize_t n_runs, cap_runs, retained;
} Stream;

/* --- helpers -------------------------------------------------------------------------- */

/* A sequence number argument, modulo 2**32 (Python's `& MASK` of any int). */
static int seq_arg(PyObject *v, uint32_t *seq)
{
    unsigned long long n = PyLong_AsUnsignedLongLongMask(v);
    if (n == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *seq = (uint32_t)n;
    return 0;
}

/* TcpReassembler.offset: the stream offset of `seq`, nearest to the expected one. */
static long long offset_of(const Stream *s, uint32_t seq)
{
    uint32_t d = seq - s->base - (uint32_t)s->next_offset;
    return s->next_offset + ((long long)d >= HALF ? (long long)d - (1ll << 32) : (long long)d);
}

/* Bytes that differ between two equal-length spans (tcp._differing). */
static long long differing(const unsigned char *a, const unsigned char *b, Py_ssize_t n)
{
    long long count = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        count += a[i] != b[i];
    return count;
}

/* Compare a retransmitted span with the delivered bytes kept (_check_delivered). */
static void check_delivered(Stream *s, long long off, const unsigned char *data, Py_ssize_t n)
{
    long long end = off + n;
    for (Py_ssize_t i = 0; i < s->n_runs; i++) {
        const Run *r = &s->runs[i];
        long long a = off > r->start ? off : r->start;
        long long b = end < r->start + r->len ? end : r->start + r->len;
        if (a < b)
            s->conflicting += differing(data + (a - off), r->bytes + (a - r->start),
                                        (Py_ssize_t)(b - a));
    }
}

/* Drop the oldest `excess` kept bytes (_forget). */
static void forget(Stream *s, Py_ssize_t excess)
{
    s->retained -= excess;
    while (excess) {
        Run *r = &s->runs[0];
        if (r->len <= excess) {
            excess -= r->len;
            PyMem_Free(r->bytes);
            memmove(s->runs, s->runs + 1, (size_t)(s->n_runs - 1) * sizeof(Run));
            s->n_runs--;
        } else {
            memmove(r->bytes, r->bytes + excess, (size_t)(r->len - excess));
            r->len -= excess;
            r->start += excess;
            excess = 0;
        }
    }
}

/* Keep delivered bytes at next_offset for the overlap check. -1 on no memory. */
static int keep(Stream *s, const unsigned char *data, Py_ssize_t n)
{
    Run *last = s->n_runs ? &s->runs[s->n_runs - 1] : NULL;
    if (last == NULL || last->start + last->len != s->next_offset) {
        if (s->n_runs == s->cap_runs) {
            Py_ssize_t cap = s->cap_runs ? s->cap_runs * 2 : 4;
            Run *grown = PyMem_Realloc(s->runs, (size_t)cap * sizeof(Run));
            if (grown == NULL)
                return -1;
            s->runs = grown;
            s->cap_runs = cap;
        }
        last = &s->runs[s->n_runs++];
        *last = (Run){ s->next_offset, 0, 0, NULL };
    }
    if (last->len + n > last->cap) {
        /* exact at first (most streams are one short handshake), then doubling */
        Py_ssize_t cap = last->cap ? last->cap * 2 : n;
        if (cap < last->len + n)
            cap = last->len + n;
        unsigned char *grown = PyMem_Realloc(last->bytes, (size_t)cap);
        if (grown == NULL)
            return -1;
        last->bytes = grown;
        last->cap = cap;
    }
    if (n > 0)
        memcpy(last->bytes + last->len, data, (size_t)n);
    last->len += n;
    return 0;
}

/* _deliver: the bytes of `data` up to the cap, kept and counted; a new bytes object. */
static PyObject *deliver(Stream *s, const char *data, Py_ssize_t n)
{
    long long room = s->max_bytes - s->next_offset;
    if (n > room)
        n = room < 0 ? 0 : (Py_ssize_t)room;
    PyObject *out = PyBytes_FromStringAndSize(data, n);
    if (out == NULL)
        return NULL;
    if (keep(s, (const unsigned char *)data, n) < 0) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    s->next_offset += n;
    s->stored += n;
    s->retained += n;
    if (s->retained > 2 * RETAIN)
        forget(s, s->retained - RETAIN);
    return out;
}

/* Join byte strings (a list) into one bytes object. */
static PyObject *join(PyObject *parts)
{
    Py_ssize_t total = 0, n = PyList_GET_SIZE(parts);
    for (Py_ssize_t i = 0; i < n; i++)
        total += PyBytes_GET_SIZE(PyList_GET_ITEM(parts, i));
    if (n == 1)
        return Py_NewRef(PyList_GET_ITEM(parts, 0));
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    char *at = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *part = PyList_GET_ITEM(parts, i);
        memcpy(at, PyBytes_AS_STRING(part), (size_t)PyBytes_GET_SIZE(part));
        at += PyBytes_GET_SIZE(part);
    }
    return out;
}

/* _drain: deliver the waiting segments that now touch the contiguous end, joined. */
static PyObject *drain(Stream *s)
{
    PyObject *parts = PyList_New(0);
    while (parts != NULL && s->n_pending && s->pending[0].off <= s->next_offset) {
        Piece p = s->pending[0];
        memmove(s->pending, s->pending + 1, (size_t)(s->n_pending - 1) * sizeof(Piece));
        s->n_pending--;
        Py_ssize_t len = PyBytes_GET_SIZE(p.data);
        if (p.off + len > s->next_offset) {
            Py_ssize_t skip = (Py_ssize_t)(s->next_offset - p.off);
            PyObject *run = deliver(s, PyBytes_AS_STRING(p.data) + skip, len - skip);
            if (run == NULL || PyList_Append(parts, run) < 0)
                Py_CLEAR(parts);
            Py_XDECREF(run);
        }
        Py_DECREF(p.data);
    }
    PyObject *out = parts ? join(parts) : NULL;
    Py_XDECREF(parts);
    return out;
}

/* _skip_to: holes up to `limit` become gaps; what waits there is delivered. A list. */
static PyObject *skip_to(Stream *s, long long limit)
{
    PyObject *out = PyList_New(0);
    while (out != NULL && s->next_offset < limit) {
        if (s->n_pending && s->pending[0].off <= s->next_offset) {
            PyObject *run = drain(s);
            if (run == NULL || (PyBytes_GET_SIZE(run) && PyList_Append(out, run) < 0))
                Py_CLEAR(out);
            Py_XDECREF(run);
            continue;
        }
        long long stop = s->n_pending && s->pending[0].off < limit ? s->pending[0].off : limit;
        PyObject *gap = Py_BuildValue("(LL)", s->next_offset, stop - s->next_offset);
        if (gap == NULL || PyList_Append(s->gaps, gap) < 0)
            Py_CLEAR(out);
        Py_XDECREF(gap);
        s->next_offset = stop;
    }
    if (out != NULL && s->n_pending && s->pending[0].off <= s->next_offset) {
        PyObject *run = drain(s);
        if (run == NULL || (PyBytes_GET_SIZE(run) && PyList_Append(out, run) < 0))
            Py_CLEAR(out);
        Py_XDECREF(run);
    }
    return out;
}

/* Insert a piece in offset order (bisect.insort; offsets are unique). Steals data. */
static int insert_piece(Stream *s, long long off, PyObject *data)
{
    if (s->n_pending == s->cap_pending) {
        Py_ssize_t cap = s->cap_pending ? s->cap_pending * 2 : 4;
        Piece *grown = PyMem_Realloc(s->pending, (size_t)cap * sizeof(Piece));
        if (grown == NULL) {
            Py_DECREF(data);
            PyErr_NoMemory();
            return -1;
        }
        s->pending = grown;
        s->cap_pending = cap;
    }
    Py_ssize_t i = s->n_pending;
    while (i > 0 && s->pending[i - 1].off > off)
        i--;
    memmove(s->pending + i + 1, s->pending + i, (size_t)(s->n_pending - i) * sizeof(Piece));
    s->pending[i] = (Piece){ off, data };
    s->n_pending++;
    return 0;
}

/* A part of a segment waiting to be kept: data[at:at + len] at stream offset off. */
typedef struct { long long off; Py_ssize_t at, len; } Part;

/* _buffer: keep an out-of-order segment, minus what earlier copies already cover. */
static int buffer(Stream *s, long long off, PyObject *data)
{
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t cap = s->n_pending + 2, n = 1;
    Part *parts = PyMem_Malloc((size_t)cap * 2 * sizeof(Part));
    if (parts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Part *next = parts + cap; /* two halves: the parts, and those kept of them */
    parts[0] = (Part){ off, 0, PyBytes_GET_SIZE(data) };
    long long end = off + PyBytes_GET_SIZE(data);
    int overlapped = 0;
    Py_ssize_t i = 0;
    while (i < s->n_pending && s->pending[i].off < off)
        i++;
    i = i > 0 ? i - 1 : 0;
    for (; i < s->n_pending && s->pending[i].off < end; i++) {
        long long o = s->pending[i].off;
        long long oe = o + PyBytes_GET_SIZE(s->pending[i].data);
        const unsigned char *od = (const unsigned char *)PyBytes_AS_STRING(s->pending[i].data);
        Py_ssize_t kept = 0;
        for (Py_ssize_t j = 0; j < n; j++) {
            Part p = parts[j];
            long long pe = p.off + p.len;
            long long a = p.off > o ? p.off : o, b = pe < oe ? pe : oe;
            if (a >= b) {
                next[kept++] = p;
                continue;
            }
            overlapped = 1;
            s->conflicting += differing(d + p.at + (a - p.off), od + (a - o), (Py_ssize_t)(b - a));
            if (p.off < a)
                next[kept++] = (Part){ p.off, p.at, (Py_ssize_t)(a - p.off) };
            if (pe > b)
                next[kept++] = (Part){ b, p.at + (Py_ssize_t)(b - p.off), (Py_ssize_t)(pe - b) };
        }
        Part *swap = parts;
        parts = next;
        next = swap;
        n = kept;
    }
    if (overlapped)
        s->retransmissions++;
    int rc = 0;
    for (Py_ssize_t j = 0; j < n && rc == 0; j++) {
        PyObject *piece = PyBytes_FromStringAndSize((const char *)d + parts[j].at, parts[j].len);
        rc = piece == NULL ? -1 : insert_piece(s, parts[j].off, piece);
    }
    PyMem_Free(parts < next ? parts : next);
    return rc;
}

/* --- methods ------------------------------------------------------------------------ */

static PyObject *nothing(void) { return PyTuple_New(0); } /* tcp.NOTHING */

static PyObject *Stream_syn(Stream *s, PyObject *arg)
{
    uint32_t seq;
    if (seq_arg(arg, &seq) < 0)
        return NULL;
    if (!s->started) {
        s->base = seq + 1;
        s->started = 1;
    }
    Py_RETURN_NONE;
}

static PyObject *Stream_offset(Stream *s, PyObject *arg)
{
    uint32_t seq;
    return seq_arg(arg, &seq) < 0 ? NULL : PyLong_FromLongLong(offset_of(s, seq));
}

/* The in-order part of segment(): deliver at next_offset, then what waits after it. */
static PyObject *deliver_run(Stream *s, const char *data, Py_ssize_t n)
{
    PyObject *run = deliver(s, data, n);
    if (run != NULL && s->n_pending) {
        PyObject *more = drain(s);
        if (more == NULL)
            Py_CLEAR(run);
        else if (PyBytes_GET_SIZE(more))
            PyBytes_ConcatAndDel(&run, more);
        else
            Py_DECREF(more);
    }
    if (run == NULL)
        return NULL;
    PyObject *out = PyList_New(1);
    if (out == NULL) {
        Py_DECREF(run);
        return NULL;
    }
    PyList_SET_ITEM(out, 0, run);
    return out;
}

/* segment(seq, payload, fin=False): the runs of bytes that became contiguous. */
static PyObject *Stream_segment(Stream *s, PyObject *args)
{
    PyObject *seq_obj, *payload;
    int fin = 0;
    uint32_t seq;
    if (!PyArg_ParseTuple(args, "OS|p", &seq_obj, &payload, &fin) || seq_arg(seq_obj, &seq) < 0)
        return NULL;
    Py_ssize_t n = PyBytes_GET_SIZE(payload);
    const char *data = PyBytes_AS_STRING(payload);
    if (!s->started) {
        if (!n && !fin)
            return nothing();
        s->base = seq;
        s->started = s->truncated_at_start = 1;
    } else if (!n && !fin) {
        return nothing(); /* a bare ACK: nothing to place */
    }
    long long off = offset_of(s, seq), end = off + n;
    if (fin && !s->has_fin) {
        s->fin_offset = end;
        s->has_fin = 1;
    }
    if (!n)
        return nothing();
    if (end > s->high)
        s->high = end;
    if (end <= s->next_offset) {
        s->retransmissions++;
        check_delivered(s, off, (const unsigned char *)data, n);
        return nothing();
    }
    if (s->next_offset >= s->max_bytes)
        return nothing(); /* beyond the cap: counted through high only */
    if (off < s->next_offset) {
        Py_ssize_t cut = (Py_ssize_t)(s->next_offset - off);
        s->retransmissions++;
        check_delivered(s, off, (const unsigned char *)data, cut);
        data += cut;
        n -= cut;
        off = s->next_offset;
    }
    if (off == s->next_offset)
        return deliver_run(s, data, n);
    if (off < s->max_bytes) {
        PyObject *rest = data == PyBytes_AS_STRING(payload) ? Py_NewRef(payload)
                                                            : PyBytes_FromStringAndSize(data, n);
        int rc = rest == NULL ? -1 : buffer(s, off, rest);
        Py_XDECREF(rest);
        if (rc < 0)
            return NULL;
    }
    return nothing();
}

static PyObject *Stream_expects(Stream *s, PyObject *arg)
{
    uint32_t seq;
    if (seq_arg(arg, &seq) < 0)
        return NULL;
    int at_end = seq - s->base - (uint32_t)s->next_offset == 0;
    return PyBool_FromLong(at_end && s->started && !s->n_pending);
}

static PyObject *Stream_distance(Stream *s, PyObject *arg)
{
    uint32_t seq;
    if (seq_arg(arg, &seq) < 0)
        return NULL;
    long long off = offset_of(s, seq);
    if (off < -1)
        return PyLong_FromLongLong(-1 - off);
    long long high = (s->next_offset > s->high ? s->next_offset : s->high) + 1;
    return PyLong_FromLongLong(off > high ? off - high : 0);
}

static PyObject *Stream_end_seq(Stream *s, PyObject *unused)
{
    (void)unused;
    if (!s->started || s->n_pending)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong((uint32_t)(s->base + (uint32_t)s->next_offset));
}

static PyObject *Stream_advance(Stream *s, PyObject *arg)
{
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    long long end = s->next_offset + n < s->max_bytes ? s->next_offset + n : s->max_bytes;
    s->next_offset = end;
    if (end > s->high)
        s->high = end;
    Py_RETURN_NONE;
}

static PyObject *Stream_acked(Stream *s, PyObject *arg)
{
    uint32_t ack;
    if (seq_arg(arg, &ack) < 0)
        return NULL;
    if (!s->started || ack - s->base - (uint32_t)s->next_offset == 0)
        return nothing(); /* acknowledges exactly what we have */
    long long limit = offset_of(s, ack);
    if (s->has_fin && s->fin_offset < limit)
        limit = s->fin_offset;
    if (limit <= s->next_offset || s->next_offset >= s->max_bytes)
        return nothing();
    return skip_to(s, limit < s->max_bytes ? limit : s->max_bytes);
}

static PyObject *Stream_flush(Stream *s, PyObject *unused)
{
    (void)unused;
    if (!s->started || s->next_offset >= s->max_bytes)
        return nothing();
    long long limit = s->next_offset;
    if (s->n_pending) {
        const Piece *last = &s->pending[s->n_pending - 1];
        limit = last->off + PyBytes_GET_SIZE(last->data);
    }
    if (s->has_fin && s->fin_offset > limit)
        limit = s->fin_offset;
    if (limit > s->max_bytes) /* a segment waiting across the cap: no gap past it */
        limit = s->max_bytes;
    return limit > s->next_offset ? skip_to(s, limit) : nothing();
}

/* Keep no bytes any more: the stream is not read on (TcpReassembler.release). */
static PyObject *Stream_release(Stream *s, PyObject *unused)
{
    (void)unused;
    for (Py_ssize_t i = 0; i < s->n_pending; i++)
        Py_DECREF(s->pending[i].data);
    PyMem_Free(s->pending);
    s->pending = NULL;
    s->n_pending = s->cap_pending = 0;
    for (Py_ssize_t i = 0; i < s->n_runs; i++)
        PyMem_Free(s->runs[i].bytes);
    PyMem_Free(s->runs);
    s->runs = NULL;
    s->n_runs = s->cap_runs = 0;
    s->retained = 0;
    Py_RETURN_NONE;
}

static PyMethodDef Stream_methods[] = {
    { "syn", (PyCFunction)Stream_syn, METH_O, "The SYN: the stream starts at seq + 1." },
    { "offset", (PyCFunction)Stream_offset, METH_O, "The stream offset of seq." },
    { "segment", (PyCFunction)Stream_segment, METH_VARARGS,
      "segment(seq, payload, fin=False): the runs of bytes that became contiguous." },
    { "expects", (PyCFunction)Stream_expects, METH_O, "Whether seq extends the stream." },
    { "distance", (PyCFunction)Stream_distance, METH_O,
      "How far seq lies outside the sequence numbers used so far." },
    { "end_seq", (PyCFunction)Stream_end_seq, METH_NOARGS,
      "The next byte's sequence number, or None." },
    { "advance", (PyCFunction)Stream_advance, METH_O, "Count n bytes at the end as received." },
    { "acked", (PyCFunction)Stream_acked, METH_O, "The peer acknowledged up to ack." },
    { "flush", (PyCFunction)Stream_flush, METH_NOARGS, "End of stream: holes become gaps." },
    { "release", (PyCFunction)Stream_release, METH_NOARGS, "Keep no bytes any more." },
    { NULL, NULL, 0, NULL },
};

/* --- attributes --------------------------------------------------------------------- */

static PyObject *get_fin_offset(Stream *s, void *c)
{
    (void)c;
    return s->has_fin ? PyLong_FromLongLong(s->fin_offset) : Py_NewRef(Py_None);
}

static PyObject *get_beyond_cap(Stream *s, void *c)
{
    (void)c;
    long long cap = s->max_bytes > s->next_offset ? s->max_bytes : s->next_offset;
    return PyLong_FromLongLong(s->high > cap ? s->high - cap : 0);
}

static PyObject *get_complete(Stream *s, void *c)
{
    (void)c;
    long long fin = s->fin_offset < s->max_bytes ? s->fin_offset : s->max_bytes;
    return PyBool_FromLong(s->has_fin && s->next_offset >= fin);
}

static PyObject *get_pending(Stream *s, void *c)
{
    (void)c;
    PyObject *out = PyList_New(s->n_pending);
    for (Py_ssize_t i = 0; out != NULL && i < s->n_pending; i++) {
        PyObject *item = Py_BuildValue("(LO)", s->pending[i].off, s->pending[i].data);
        if (item == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, item);
    }
    return out;
}

static PyGetSetDef Stream_getset[] = {
    { "fin_offset", (getter)get_fin_offset, NULL, "offset the FIN occupies, or None", NULL },
    { "beyond_cap", (getter)get_beyond_cap, NULL, "bytes seen past the cap", NULL },
    { "complete", (getter)get_complete, NULL, "everything up to the FIN delivered", NULL },
    { "_pending", (getter)get_pending, NULL, "the segments waiting, as (offset, bytes)", NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

static PyMemberDef Stream_members[] = {
    { "max_bytes", T_LONGLONG, offsetof(Stream, max_bytes), READONLY, NULL },
    { "next_offset", T_LONGLONG, offsetof(Stream, next_offset), READONLY, NULL },
    { "started", T_BOOL, offsetof(Stream, started), READONLY, NULL },
    { "truncated_at_start", T_BOOL, offsetof(Stream, truncated_at_start), READONLY, NULL },
    { "gaps", T_OBJECT, offsetof(Stream, gaps), READONLY, "(offset, length) of each gap" },
    { "retransmissions", T_LONGLONG, offsetof(Stream, retransmissions), 0, NULL },
    { "conflicting_bytes", T_LONGLONG, offsetof(Stream, conflicting), READONLY, NULL },
    { "stored", T_LONGLONG, offsetof(Stream, stored), READONLY, NULL },
    { "_high", T_LONGLONG, offsetof(Stream, high), READONLY, NULL },
    { NULL, 0, 0, 0, NULL },
};

/* --- the type ----------------------------------------------------------------------- */

/* StreamCore(max_bytes=262144): None means no cap. */
static int Stream_init(Stream *s, PyObject *args, PyObject *kwds)
{
    PyObject *max_bytes = NULL;
    static char *kwlist[] = { "max_bytes", NULL };
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", kwlist, &max_bytes))
        return -1;
    if (s->gaps != NULL) {
        PyErr_SetString(PyExc_TypeError, "a StreamCore is initialised once");
        return -1;
    }
    s->max_bytes = 256 * 1024;
    if (max_bytes == Py_None) {
        s->max_bytes = UNLIMITED;
    } else if (max_bytes != NULL) {
        s->max_bytes = PyLong_AsLongLong(max_bytes);
        if (s->max_bytes == -1 && PyErr_Occurred())
            return -1;
    }
    s->gaps = PyList_New(0);
    return s->gaps == NULL ? -1 : 0;
}

static void Stream_dealloc(Stream *s)
{
    Py_CLEAR(s->gaps);
    for (Py_ssize_t i = 0; i < s->n_pending; i++)
        Py_DECREF(s->pending[i].data);
    PyMem_Free(s->pending);
    for (Py_ssize_t i = 0; i < s->n_runs; i++)
        PyMem_Free(s->runs[i].bytes);
    PyMem_Free(s->runs);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

PyTypeObject ccore_StreamType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mtlsprobe.capture._ccore.StreamCore",
    .tp_doc = "StreamCore(max_bytes=262144): one direction's TCP reassembly, as "
              "tcp.TcpReassembler.",
    .tp_basicsize = sizeof(Stream),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Stream_init,
    .tp_dealloc = (destructor)Stream_dealloc,
    .tp_methods = Stream_methods,
    .tp_members = Stream_members,
    .tp_getset = Stream_getset,
};
