/* lease.c: LeaseCore, the state and `take` of the bulk shortcut's Lease (capture/bulk.py).
 *
 * bulk.CLease subclasses it (adding conn, me, peer, key, apply and _cross from Lease) and
 * registers the lease object itself as its claimant. The Walker calls lease_take() on it
 * directly, so a bulk frame costs no Python call; Python may call it too
 * (lease(buf, at, end, ts, linktype)). The state is Lease's, as attributes: ttl and seq
 * (None until known), credit, counting, taken, frames, last, other (the opposite lease).
 * take() is Lease.take line for line; a segment that runs past the skipped record calls
 * the subclass's _cross(payload, seq, ts), as Lease does.
 */
#include "ccore.h"

#include <structmember.h>

enum { TCP = 6, FIN = 0x01, SYN = 0x02, RST = 0x04, ACK = 0x10 };
#define NOT_BARE_ACK (SYN | FIN | RST)
#define HALF 0x80000000u

typedef struct {
    PyObject_HEAD
    /* the Layout (bulk._LayoutClaim) */
    long linktype;
    Py_ssize_t ip, link_at, link_end, headers;
    char v6; /* IPv6 straight to TCP (else IPv4 without options) */
    PyObject *link;  /* bytes the link header repeats */
    PyObject *addrs; /* IPv6: the address bytes the claim key leaves out */
    PyObject *other; /* the opposite direction's lease */
    long long ttl, seq, credit, taken, frames;
    int has_ttl, has_seq, counting;
    double last;
} LeaseCore;

static PyObject *s_seq;

/* other.seq as (known, value): read from C for a LeaseCore, else as an attribute. */
static int peer_seq(LeaseCore *lease, long long *seq)
{
    PyObject *other = lease->other;
    if (other != NULL && PyObject_TypeCheck(other, &ccore_LeaseType)) {
        *seq = ((LeaseCore *)other)->seq;
        return ((LeaseCore *)other)->has_seq;
    }
    PyObject *v = PyObject_GetAttr(other ? other : Py_None, s_seq);
    if (v == NULL)
        return -1;
    int known = v != Py_None;
    *seq = known ? PyLong_AsLongLong(v) : 0;
    Py_DECREF(v);
    return known && *seq == -1 && PyErr_Occurred() ? -1 : known;
}

/* The frame at buf[at:end] as Lease.take reads it: 1 taken, 0 declined, -1 error. */
int ccore_lease_take(PyObject *self, PyObject *buf, Py_ssize_t at, Py_ssize_t end, double ts,
                     long linktype)
{
    LeaseCore *lease = (LeaseCore *)self;
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t ip = at + lease->ip;
    if (lease->link == NULL || lease->addrs == NULL) /* not initialised */
        return 0;
    if (linktype != lease->linktype || end - ip < lease->headers || end > PyBytes_GET_SIZE(buf)
        || at < 0 || memcmp(b + at + lease->link_at, PyBytes_AS_STRING(lease->link),
                            (size_t)(lease->link_end - lease->link_at)))
        return 0;
    const unsigned char *p = b + ip;
    long long total, header;
    unsigned proto, ttl, doff, flags;
    if (lease->v6) { /* version, payload length, next header, hop limit; TCP at 40 */
        if (p[0] >> 4 != 6 || memcmp(p + 8, PyBytes_AS_STRING(lease->addrs), 24))
            return 0;
        total = (long long)be16(p + 4) + 40;
        proto = p[6];
        ttl = p[7];
        p += 20; /* the TCP fields below sit 20 bytes later than IPv4's */
    } else {
        if (p[0] != 0x45 || be16(p + 6) & 0x3FFF)
            return 0;
        total = be16(p + 2);
        proto = p[9];
        ttl = p[8];
    }
    uint32_t seq = be32(p + 24), ack = be32(p + 28);
    doff = p[32];
    flags = p[33];
    header = (lease->v6 ? 40 : 20) + (doff >> 4) * 4;
    if (proto != TCP || flags & NOT_BARE_ACK || !(flags & ACK) || !lease->has_ttl
        || (long long)ttl != lease->ttl || ip + total > end)
        return 0;
    long long size = total - header;
    if (size < 0 || doff < 0x50)
        return 0;
    long long other_seq;
    int known = peer_seq(lease, &other_seq);
    if (known < 0)
        return -1;
    uint32_t ahead = (uint32_t)((unsigned long long)ack - (unsigned long long)other_seq);
    if (known && 0 < ahead && ahead < HALF)
        return 0; /* acknowledges bytes the capture lacks: the general path decides */
    if (size) {
        if (!lease->has_seq || (long long)seq != lease->seq)
            return 0;
        if (size <= lease->credit) {
            lease->credit -= size;
            lease->taken += size;
        } else if (lease->counting) {
            PyObject *payload = PyBytes_FromStringAndSize((const char *)b + ip + header, size);
            PyObject *r = payload ? PyObject_CallMethod(self, "_cross", "OId", payload,
                                                        (unsigned int)seq, ts) : NULL;
            Py_XDECREF(payload);
            if (r == NULL)
                return -1;
            Py_DECREF(r);
        } else {
            return 0;
        }
        lease->seq = (long long)((seq + (uint32_t)size) & 0xFFFFFFFFu);
        lease->has_seq = 1;
    }
    lease->frames++;
    lease->last = ts;
    return 1;
}

/* lease(buf, at, end, ts, linktype): the pcapfile.Claimant, from Python. */
static PyObject *Lease_call(PyObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *buf;
    Py_ssize_t at, end;
    double ts;
    long linktype;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "a lease takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "Snndl", &buf, &at, &end, &ts, &linktype))
        return NULL;
    int taken = ccore_lease_take(self, buf, at, end, ts, linktype);
    return taken < 0 ? NULL : PyBool_FromLong(taken);
}

/* LeaseCore(conn, me, peer, linktype, lay, key, addrs): Lease's signature; the Layout
 * (ip, v6, link_at, link) and addrs are kept here, the rest is the subclass's. */
static int Lease_init(LeaseCore *self, PyObject *args, PyObject *kwds)
{
    PyObject *conn, *me, *peer, *lay, *key, *addrs;
    long linktype;
    static char *kwlist[] = { "conn", "me", "peer", "linktype", "lay", "key", "addrs", NULL };
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOlOOS", kwlist, &conn, &me, &peer,
                                     &linktype, &lay, &key, &addrs))
        return -1;
    PyObject *link;
    Py_ssize_t ip, link_at;
    int v6;  /* "p" writes an int */
    if (!PyArg_ParseTuple(lay, "npnS;lay must be a bulk.Layout", &ip, &v6, &link_at, &link))
        return -1;
    if (ip < 0 || link_at < 0 || link_at + PyBytes_GET_SIZE(link) > ip
        || (v6 && PyBytes_GET_SIZE(addrs) != 24)) {
        PyErr_SetString(PyExc_ValueError, "not a lease's layout");
        return -1;
    }
    self->linktype = linktype;
    self->ip = ip;
    self->v6 = v6;
    self->link_at = link_at;
    self->link_end = link_at + PyBytes_GET_SIZE(link);
    self->headers = v6 ? 60 : 40;
    Py_XSETREF(self->link, Py_NewRef(link));
    Py_XSETREF(self->addrs, Py_NewRef(addrs));
    Py_CLEAR(self->other);
    self->has_ttl = self->has_seq = self->counting = 0;
    self->credit = self->taken = self->frames = 0;
    self->last = 0.0;
    return 0;
}

/* --- attributes: None-or-int ones, and counting/credit, which take any int or truth --- */

static PyObject *get_optional(long long value, int known)
{
    return known ? PyLong_FromLongLong(value) : Py_NewRef(Py_None);
}

static int set_optional(PyObject *v, long long *value, int *known)
{
    if (v == NULL || v == Py_None) {
        *known = 0;
        return 0;
    }
    long long n = PyLong_AsLongLong(v);
    if (n == -1 && PyErr_Occurred())
        return -1;
    *value = n;
    *known = 1;
    return 0;
}

static PyObject *get_ttl(LeaseCore *s, void *c) { (void)c; return get_optional(s->ttl, s->has_ttl); }
static int set_ttl(LeaseCore *s, PyObject *v, void *c) { (void)c; return set_optional(v, &s->ttl, &s->has_ttl); }
static PyObject *get_seq(LeaseCore *s, void *c) { (void)c; return get_optional(s->seq, s->has_seq); }
static int set_seq(LeaseCore *s, PyObject *v, void *c) { (void)c; return set_optional(v, &s->seq, &s->has_seq); }
static PyObject *get_counting(LeaseCore *s, void *c) { (void)c; return PyBool_FromLong(s->counting); }

static int set_counting(LeaseCore *s, PyObject *v, void *c)
{
    (void)c;
    int truth = v ? PyObject_IsTrue(v) : 0;
    if (truth < 0)
        return -1;
    s->counting = truth;
    return 0;
}

static PyObject *get_credit(LeaseCore *s, void *c) { (void)c; return PyLong_FromLongLong(s->credit); }

/* credit: a bigger int than 64 bits could hold is as good as LLONG_MAX (frames are small) */
static int set_credit(LeaseCore *s, PyObject *v, void *c)
{
    (void)c;
    int overflow = 0;
    long long n = v ? PyLong_AsLongLongAndOverflow(v, &overflow) : 0;
    if (n == -1 && PyErr_Occurred())
        return -1;
    s->credit = overflow > 0 ? LLONG_MAX : overflow < 0 ? LLONG_MIN : n;
    return 0;
}

static PyGetSetDef Lease_getset[] = {
    { "ttl", (getter)get_ttl, (setter)set_ttl, "the TTL its frames carry (None: not seen)", NULL },
    { "seq", (getter)get_seq, (setter)set_seq, "the stream's next sequence number", NULL },
    { "counting", (getter)get_counting, (setter)set_counting, "the sink only counts", NULL },
    { "credit", (getter)get_credit, (setter)set_credit, "data bytes the sink skips now", NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

static PyMemberDef Lease_members[] = {
    { "linktype", T_LONG, offsetof(LeaseCore, linktype), READONLY, NULL },
    { "ip", T_PYSSIZET, offsetof(LeaseCore, ip), READONLY, NULL },
    { "v6", T_BOOL, offsetof(LeaseCore, v6), READONLY, NULL },
    { "link_at", T_PYSSIZET, offsetof(LeaseCore, link_at), READONLY, NULL },
    { "link_end", T_PYSSIZET, offsetof(LeaseCore, link_end), READONLY, NULL },
    { "headers", T_PYSSIZET, offsetof(LeaseCore, headers), READONLY, NULL },
    { "link", T_OBJECT, offsetof(LeaseCore, link), READONLY, NULL },
    { "addrs", T_OBJECT, offsetof(LeaseCore, addrs), READONLY, NULL },
    { "other", T_OBJECT, offsetof(LeaseCore, other), 0, "the opposite direction's lease" },
    { "taken", T_LONGLONG, offsetof(LeaseCore, taken), 0, "data bytes taken, unsettled" },
    { "frames", T_LONGLONG, offsetof(LeaseCore, frames), 0, "frames taken, unsettled" },
    { "last", T_DOUBLE, offsetof(LeaseCore, last), 0, "time of the last frame taken" },
    { NULL, 0, 0, 0, NULL },
};

static int Lease_traverse(LeaseCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->other);
    return 0;
}

/* Only `other` can be part of a cycle; link and addrs are bytes. */
static int Lease_clear(LeaseCore *self)
{
    Py_CLEAR(self->other);
    return 0;
}

static void Lease_dealloc(LeaseCore *self)
{
    PyObject_GC_UnTrack(self);
    Lease_clear(self);
    Py_CLEAR(self->link);
    Py_CLEAR(self->addrs);
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free((PyObject *)self);
}

PyTypeObject ccore_LeaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mtlsprobe.capture._ccore.LeaseCore",
    .tp_doc = "The bulk shortcut's lease state and take(), for bulk.CLease to subclass.",
    .tp_basicsize = sizeof(LeaseCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Lease_init,
    .tp_call = Lease_call,
    .tp_dealloc = (destructor)Lease_dealloc,
    .tp_traverse = (traverseproc)Lease_traverse,
    .tp_clear = (inquiry)Lease_clear,
    .tp_getset = Lease_getset,
    .tp_members = Lease_members,
};

int ccore_lease_init(void)
{
    s_seq = PyUnicode_InternFromString("seq");
    if (s_seq == NULL)
        return -1;
    return PyType_Ready(&ccore_LeaseType);
}
