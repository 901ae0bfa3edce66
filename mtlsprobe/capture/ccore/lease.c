/* lease.c: the bulk shortcut's claimants in C (capture/bulk.py): LeaseCore, the state and
 * `take` of a Lease, and ShareCore, _OtherShare's `_take` (other --jobs shares' frames).
 *
 * bulk.CLease subclasses it (adding conn, me, peer, key, apply and _cross from Lease) and
 * registers the lease object itself as its claimant. The Walker calls lease_take() on it
 * directly, so a bulk frame costs no Python call; Python may call it too
 * (lease(buf, at, end, ts, linktype)). The state is Lease's, as attributes: ttl and seq
 * (None until known), credit, counting, taken, frames, last, other (the opposite lease).
 * take() is Lease.take line for line; a segment that runs past the skipped record calls
 * the subclass's _cross(payload, seq, ts), as Lease does. bulk.COtherShare subclasses
 * ShareCore the same way.
 */
#include "ccore.h"

#include <structmember.h>

enum { TCP = 6, FIN = 0x01, SYN = 0x02, RST = 0x04, ACK = 0x10 };
#define NOT_BARE_ACK (SYN | FIN | RST)
#define HALF 0x80000000u

/* Where one direction's frames hold their TCP segment (bulk.Layout, bulk._LayoutClaim). */
typedef struct {
    long linktype;
    Py_ssize_t ip, link_at, link_end, headers;
    char v6;        /* IPv6 straight to TCP (else IPv4 without options) */
    PyObject *link; /* bytes the link header repeats */
} Layout;

typedef struct {
    PyObject_HEAD
    Layout lay;
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

/* The Layout from (linktype, a bulk.Layout); -1 and an exception when it is not one. */
static int layout_init(Layout *lay, long linktype, PyObject *tuple)
{
    PyObject *link;
    Py_ssize_t ip, link_at;
    int v6; /* "p" writes an int */
    if (!PyArg_ParseTuple(tuple, "npnS;lay must be a bulk.Layout", &ip, &v6, &link_at, &link))
        return -1;
    if (ip < 0 || link_at < 0 || link_at + PyBytes_GET_SIZE(link) > ip) {
        PyErr_SetString(PyExc_ValueError, "not a bulk.Layout");
        return -1;
    }
    lay->linktype = linktype;
    lay->ip = ip;
    lay->v6 = (char)v6;
    lay->link_at = link_at;
    lay->link_end = link_at + PyBytes_GET_SIZE(link);
    lay->headers = v6 ? 60 : 40; /* IP and TCP without options */
    Py_XSETREF(lay->link, Py_NewRef(link));
    return 0;
}

/* Where the IP header of the frame at buf[at:end] starts, if the frame has the layout's
 * link type, link header bytes and room for the headers; else -1 (_LayoutClaim.ip_at). */
static Py_ssize_t layout_ip(const Layout *lay, PyObject *buf, Py_ssize_t at, Py_ssize_t end,
                            long linktype)
{
    Py_ssize_t ip = at + lay->ip;
    if (lay->link == NULL || linktype != lay->linktype || at < 0
        || end > PyBytes_GET_SIZE(buf) || end - ip < lay->headers)
        return -1;
    const char *b = PyBytes_AS_STRING(buf);
    if (memcmp(b + at + lay->link_at, PyBytes_AS_STRING(lay->link),
               (size_t)(lay->link_end - lay->link_at)))
        return -1;
    return ip;
}

/* The frame at buf[at:end] as Lease.take reads it: 1 taken, 0 declined, -1 error. */
int ccore_lease_take(PyObject *self, PyObject *buf, Py_ssize_t at, Py_ssize_t end, double ts,
                     long linktype)
{
    LeaseCore *lease = (LeaseCore *)self;
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t ip = layout_ip(&lease->lay, buf, at, end, linktype);
    if (ip < 0 || lease->addrs == NULL)
        return 0;
    const unsigned char *p = b + ip;
    long long total, header;
    unsigned proto, ttl, doff, flags;
    if (lease->lay.v6) { /* version, payload length, next header, hop limit; TCP at 40 */
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
    header = (lease->lay.v6 ? 40 : 20) + (doff >> 4) * 4;
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
    if (layout_init(&self->lay, linktype, lay) < 0)
        return -1;
    if (self->lay.v6 && PyBytes_GET_SIZE(addrs) != 24) {
        PyErr_SetString(PyExc_ValueError, "an IPv6 lease's addrs are 24 bytes");
        return -1;
    }
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

static PyObject *get_ttl(LeaseCore *s, void *c)
{
    (void)c;
    return get_optional(s->ttl, s->has_ttl);
}

static int set_ttl(LeaseCore *s, PyObject *v, void *c)
{
    (void)c;
    return set_optional(v, &s->ttl, &s->has_ttl);
}

static PyObject *get_seq(LeaseCore *s, void *c)
{
    (void)c;
    return get_optional(s->seq, s->has_seq);
}

static int set_seq(LeaseCore *s, PyObject *v, void *c)
{
    (void)c;
    return set_optional(v, &s->seq, &s->has_seq);
}

static PyObject *get_counting(LeaseCore *s, void *c)
{
    (void)c;
    return PyBool_FromLong(s->counting);
}

static int set_counting(LeaseCore *s, PyObject *v, void *c)
{
    (void)c;
    int truth = v ? PyObject_IsTrue(v) : 0;
    if (truth < 0)
        return -1;
    s->counting = truth;
    return 0;
}

static PyObject *get_credit(LeaseCore *s, void *c)
{
    (void)c;
    return PyLong_FromLongLong(s->credit);
}

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
#define LAYOUT_MEMBERS(T)                                                              \
    { "linktype", T_LONG, offsetof(T, lay.linktype), READONLY, NULL },                 \
    { "ip", T_PYSSIZET, offsetof(T, lay.ip), READONLY, NULL },                         \
    { "v6", T_BOOL, offsetof(T, lay.v6), READONLY, NULL },                             \
    { "link_at", T_PYSSIZET, offsetof(T, lay.link_at), READONLY, NULL },               \
    { "link_end", T_PYSSIZET, offsetof(T, lay.link_end), READONLY, NULL },             \
    { "headers", T_PYSSIZET, offsetof(T, lay.headers), READONLY, NULL },               \
    { "link", T_OBJECT, offsetof(T, lay.link), READONLY, NULL }
    LAYOUT_MEMBERS(LeaseCore),
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
    Py_CLEAR(self->lay.link);
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

/* --- ShareCore: bulk._OtherShare, other --jobs shares' frames of one layout ---------- */

typedef struct {
    PyObject_HEAD
    Layout lay;
    PyObject *addrs; /* IPv6: claim key -> the address bytes it leaves out (a dict) */
} ShareCore;

/* Any plain TCP frame of the layout (IPv6: whose full addresses match its key's):
 * _OtherShare._take. 1 taken, 0 declined, -1 error. */
int ccore_share_take(PyObject *self, PyObject *buf, Py_ssize_t at, Py_ssize_t end,
                     long linktype)
{
    ShareCore *share = (ShareCore *)self;
    Py_ssize_t ip = layout_ip(&share->lay, buf, at, end, linktype);
    if (ip < 0 || share->addrs == NULL)
        return 0;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(buf) + ip;
    if (!share->lay.v6)
        return p[0] == 0x45 && p[9] == TCP && !(p[6] & 0x3F || p[7]);
    if (p[0] >> 4 != 6 || p[6] != TCP)
        return 0;
    PyObject *key = PyBytes_FromStringAndSize((const char *)p + 32, 12);
    if (key == NULL)
        return -1;
    PyObject *addrs = PyDict_GetItemWithError(share->addrs, key);
    Py_DECREF(key);
    if (addrs == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyBytes_Check(addrs)) /* Python compares with ==: only bytes can be equal */
        return 0;
    return PyBytes_GET_SIZE(addrs) == 24 && !memcmp(PyBytes_AS_STRING(addrs), p + 8, 24);
}

/* share(buf, at, end, ts, linktype): the pcapfile.Claimant, from Python. */
static PyObject *Share_call(PyObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *buf;
    Py_ssize_t at, end;
    double ts;
    long linktype;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "a claimant takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "Snndl", &buf, &at, &end, &ts, &linktype))
        return NULL;
    int taken = ccore_share_take(self, buf, at, end, linktype);
    return taken < 0 ? NULL : PyBool_FromLong(taken);
}

/* ShareCore(linktype, lay): the layout, and an empty addrs dict. */
static int Share_init(ShareCore *self, PyObject *args, PyObject *kwds)
{
    PyObject *lay;
    long linktype;
    static char *kwlist[] = { "linktype", "lay", NULL };
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "lO", kwlist, &linktype, &lay)
        || layout_init(&self->lay, linktype, lay) < 0)
        return -1;
    Py_XSETREF(self->addrs, PyDict_New());
    return self->addrs == NULL ? -1 : 0;
}

static int Share_traverse(ShareCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->addrs);
    return 0;
}

static int Share_clear(ShareCore *self)
{
    Py_CLEAR(self->addrs);
    return 0;
}

static void Share_dealloc(ShareCore *self)
{
    PyObject_GC_UnTrack(self);
    Share_clear(self);
    Py_CLEAR(self->lay.link);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef Share_members[] = {
    LAYOUT_MEMBERS(ShareCore),
    { "addrs", T_OBJECT, offsetof(ShareCore, addrs), READONLY, "claim key -> address bytes" },
    { NULL, 0, 0, 0, NULL },
};

PyTypeObject ccore_ShareType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mtlsprobe.capture._ccore.ShareCore",
    .tp_doc = "Other --jobs shares' frames of one layout, for bulk.COtherShare to subclass.",
    .tp_basicsize = sizeof(ShareCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Share_init,
    .tp_call = Share_call,
    .tp_dealloc = (destructor)Share_dealloc,
    .tp_traverse = (traverseproc)Share_traverse,
    .tp_clear = (inquiry)Share_clear,
    .tp_members = Share_members,
};

int ccore_lease_init(void)
{
    s_seq = PyUnicode_InternFromString("seq");
    if (s_seq == NULL)
        return -1;
    return PyType_Ready(&ccore_LeaseType) < 0 ? -1 : PyType_Ready(&ccore_ShareType);
}
