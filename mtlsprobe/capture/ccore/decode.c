/* decode.c: one captured frame -> its TCP segment; the twin of capture/linklayer.py.
 *
 * Decoded here: Ethernet, Linux cooked SLL/SLL2, raw IP and BSD null/loop links, 802.1Q/
 * 802.1ad/QinQ tags, IPv4 (with options), IPv6 with extension headers, the TCP header.
 * Everything else the Python decoder knows (PPPoE, MPLS, Cisco MetaData, the tunnels,
 * EtherTypes and link types it names as not decoded) is handed to it, whole and before
 * anything is counted, so results and `skipped` counts stay identical. Every offset is
 * checked against the frame length before a byte is read.
 */
#include "ccore.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Link types, EtherTypes and IP protocols, as in linklayer.py and tunnels.py. */
enum { LT_NULL = 0, LT_ETHERNET = 1, LT_RAW_12 = 12, LT_RAW_14 = 14, LT_RAW = 101,
       LT_LOOP = 108, LT_SLL = 113, LT_RAW4 = 228, LT_RAW6 = 229, LT_SLL2 = 276 };
enum { ETH_IPV4 = 0x0800, ETH_IPV6 = 0x86DD };
enum { P_IPIP = 4, P_TCP = 6, P_UDP = 17, P_IPV6_IN_IP = 41, P_GRE = 47, P_FRAGMENT = 44,
       P_AH = 51 };
enum { MAX_DEPTH = 10, SEGMENT_FIELDS = 12 };

/* What bind() set: the TcpSegment class and the Python decoder. */
static PyTypeObject *segment_type;
static PyObject *py_decode;

/* The skip reasons, as linklayer.py spells them (interned once). */
enum { R_SHORT_FRAME, R_SHORT_TAG, R_SHORT_IPV4, R_NOT_TCP, R_IPV4_FRAGMENT, R_BAD_IPV4,
       R_SHORT_IPV6, R_SHORT_EXT, R_IPV6_FRAGMENT, R_SHORT_TCP, R_BAD_TCP, R_TOO_DEEP,
       R_COUNT };
static const char *const reason_text[R_COUNT] = {
    "short frame", "short VLAN tag", "short IPv4 header", "not TCP", "IPv4 fragment",
    "malformed IPv4 header", "short IPv6 header", "short IPv6 extension header",
    "IPv6 fragment", "short TCP header", "malformed TCP header",
    "more than 10 nested encapsulations",
};
static PyObject *reasons[R_COUNT];

/* A small direct-mapped cache of IPv4 address texts: captures reuse few addresses. */
#define ADDR4_SLOTS 4096
static PyObject *addr4_text[ADDR4_SLOTS];
static uint32_t addr4_key[ADDR4_SLOTS];

/* The frame being decoded. */
typedef struct {
    const unsigned char *p;
    Py_ssize_t len;
    PyObject *skipped; /* a dict, or NULL when the caller does not count */
} Frame;

/* skipped[reason] += 1 (linklayer._count); returns Py_None (new reference), NULL on error. */
static PyObject *count_reason(const Frame *f, PyObject *reason)
{
    if (f->skipped != NULL) {
        PyObject *old = PyDict_GetItemWithError(f->skipped, reason);
        if (old == NULL && PyErr_Occurred())
            return NULL;
        PyObject *one = PyLong_FromLong(1);
        PyObject *next = old == NULL ? one : (one ? PyNumber_Add(old, one) : NULL);
        if (next != one)
            Py_XDECREF(one);
        if (next == NULL)
            return NULL;
        int rc = PyDict_SetItem(f->skipped, reason, next);
        Py_DECREF(next);
        if (rc < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* The text of an IPv4 address (inet_ntop's), from the cache. New reference. */
static PyObject *addr4(const unsigned char *p)
{
    uint32_t key = be32(p);
    unsigned slot = (key ^ key >> 12 ^ key >> 24) & (ADDR4_SLOTS - 1);
    if (addr4_text[slot] == NULL || addr4_key[slot] != key) {
        char text[16];
        snprintf(text, sizeof text, "%u.%u.%u.%u", p[0], p[1], p[2], p[3]);
        PyObject *obj = PyUnicode_FromString(text);
        if (obj == NULL)
            return NULL;
        Py_XSETREF(addr4_text[slot], obj);
        addr4_key[slot] = key;
    }
    Py_INCREF(addr4_text[slot]);
    return addr4_text[slot];
}

/* The text of an IPv6 address, as socket.inet_ntop (the same libc call) gives it. */
static PyObject *addr6(const unsigned char *p)
{
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, p, text, sizeof text) == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyUnicode_FromString(text);
}

/* What parsing a frame found (decode_link): a TCP segment, a skip, or a frame for the
 * Python decoder. Parsing counts nothing and builds nothing, so the --jobs filter
 * (ccore_share_hash) and decode() share one reading of the headers. */
enum { FOUND_SEGMENT, FOUND_SKIP, FOUND_FALLBACK };
typedef struct {
    int found, reason;              /* reason: FOUND_SKIP's R_ */
    const unsigned char *src, *dst; /* the IP addresses, alen (4 or 16) bytes each */
    int alen, ttl;
    long ip_id;                     /* -1: IPv6 (None) */
    Py_ssize_t tcp, hlen, end;      /* TCP header at tcp, hlen bytes; IP packet ends at end */
} Parsed;

static int skip_as(Parsed *r, int reason)
{
    r->found = FOUND_SKIP;
    r->reason = reason;
    return 0;
}

/* The TCP header at `pos` of an IP packet ending at `end` (linklayer._tcp_segment). */
static int parse_tcp(const Frame *f, Py_ssize_t pos, Py_ssize_t end, Parsed *r)
{
    if (f->len < pos + 20)
        return skip_as(r, R_SHORT_TCP);
    Py_ssize_t hlen = (f->p[pos + 12] >> 4) * 4;
    if (hlen < 20 || f->len < pos + hlen)
        return skip_as(r, R_BAD_TCP);
    r->found = FOUND_SEGMENT;
    r->tcp = pos;
    r->hlen = hlen;
    r->end = end;
    return 0;
}

/* IPv4 at `off` (linklayer._ipv4_tcp); a tunnel is the Python decoder's. */
static int parse_ipv4(const Frame *f, Py_ssize_t off, Parsed *r)
{
    const unsigned char *p = f->p + off;
    if (f->len < off + 20)
        return skip_as(r, R_SHORT_IPV4);
    unsigned vihl = p[0], proto = p[9];
    Py_ssize_t total = be16(p + 2);
    if (proto != P_TCP) {
        if (proto == P_IPIP || proto == P_UDP || proto == P_IPV6_IN_IP || proto == P_GRE)
            r->found = FOUND_FALLBACK;
        else
            skip_as(r, R_NOT_TCP);
        return 0;
    }
    if (be16(p + 6) & 0x3FFF)
        return skip_as(r, R_IPV4_FRAGMENT);
    Py_ssize_t ihl = (vihl & 0x0F) * 4;
    if (vihl >> 4 != 4 || ihl < 20)
        return skip_as(r, R_BAD_IPV4);
    r->src = p + 12;
    r->dst = p + 16;
    r->alen = 4;
    r->ttl = p[8];
    r->ip_id = (long)be16(p + 4);
    return parse_tcp(f, off + ihl, total >= ihl ? off + total : f->len, r); /* 0: offload */
}

/* IPv6 at `off` and its extension headers (linklayer._ipv6_tcp). */
static int parse_ipv6(const Frame *f, Py_ssize_t off, Parsed *r)
{
    const unsigned char *p = f->p;
    if (f->len < off + 40)
        return skip_as(r, R_SHORT_IPV6);
    Py_ssize_t plen = be16(p + off + 4);
    unsigned nxt = p[off + 6];
    Py_ssize_t end = plen ? off + 40 + plen : f->len; /* 0: jumbogram or offload */
    Py_ssize_t pos = off + 40;
    while (nxt == 0 || nxt == 43 || nxt == 60 || nxt == P_AH) {
        if (f->len < pos + 2)
            return skip_as(r, R_SHORT_EXT);
        Py_ssize_t step = nxt == P_AH ? (p[pos + 1] + 2) * 4 : (p[pos + 1] + 1) * 8;
        nxt = p[pos];
        pos += step;
    }
    if (nxt == P_TCP) {
        r->src = p + off + 8;
        r->dst = p + off + 24;
        r->alen = 16;
        r->ttl = p[off + 7];
        r->ip_id = -1;
        return parse_tcp(f, pos, end, r);
    }
    if (nxt == P_FRAGMENT)
        return skip_as(r, R_IPV6_FRAGMENT);
    if (nxt == P_IPIP || nxt == P_UDP || nxt == P_IPV6_IN_IP || nxt == P_GRE) {
        r->found = FOUND_FALLBACK;
        return 0;
    }
    return skip_as(r, R_NOT_TCP);
}

/* What EtherType `etype` says is at `off` (linklayer._by_ethertype): IP, or VLAN tags
 * unwrapped here; any other encapsulation is the Python decoder's. */
static int by_ethertype(const Frame *f, unsigned etype, Py_ssize_t off, Parsed *r)
{
    int depth = 0;
    for (;;) {
        if (etype == ETH_IPV4)
            return parse_ipv4(f, off, r);
        if (etype == ETH_IPV6)
            return parse_ipv6(f, off, r);
        if (++depth > MAX_DEPTH)
            return skip_as(r, R_TOO_DEEP);
        if (etype != 0x8100 && etype != 0x88A8 && etype != 0x9100 && etype != 0x9200) {
            r->found = FOUND_FALLBACK;
            return 0;
        }
        if (f->len < off + 4)
            return skip_as(r, R_SHORT_TAG);
        etype = be16(f->p + off + 2);
        off += 4;
    }
}

/* The link header (linklayer.decode). */
static int decode_link(const Frame *f, long long linktype, Parsed *r)
{
    r->found = FOUND_FALLBACK;
    switch (linktype) {
    case LT_ETHERNET:
        if (f->len < 14)
            return skip_as(r, R_SHORT_FRAME);
        return by_ethertype(f, be16(f->p + 12), 14, r);
    case LT_SLL:
        if (f->len < 16)
            return skip_as(r, R_SHORT_FRAME);
        return by_ethertype(f, be16(f->p + 14), 16, r);
    case LT_SLL2:
        if (f->len < 20)
            return skip_as(r, R_SHORT_FRAME);
        return by_ethertype(f, be16(f->p), 20, r);
    case LT_RAW_12: case LT_RAW_14: case LT_RAW: case LT_RAW4: case LT_RAW6:
    case LT_NULL: case LT_LOOP: {
        Py_ssize_t off = linktype == LT_NULL || linktype == LT_LOOP ? 4 : 0;
        if (f->len <= off)
            return skip_as(r, R_SHORT_FRAME);
        unsigned version = f->p[off] >> 4;
        if (version == 4)
            return parse_ipv4(f, off, r);
        if (version == 6)
            return parse_ipv6(f, off, r);
        return 0; /* named as not decoded by the Python decoder */
    }
    default:
        return 0;
    }
}

/* The TcpSegment of a parsed frame (linklayer._tcp_segment's tuple). */
static PyObject *segment_of(const Frame *f, const Parsed *r)
{
    const unsigned char *p = f->p;
    Py_ssize_t pos = r->tcp, hlen = r->hlen, data = pos + hlen;
    Py_ssize_t stop = r->end < f->len ? r->end : f->len; /* Python's slice clips */
    PyObject *src = r->alen == 4 ? addr4(r->src) : addr6(r->src);
    PyObject *dst = src == NULL ? NULL : r->alen == 4 ? addr4(r->dst) : addr6(r->dst);
    if (dst == NULL) {
        Py_XDECREF(src);
        return NULL;
    }
    PyObject *seg = segment_type->tp_alloc(segment_type, SEGMENT_FIELDS);
    if (seg == NULL) {
        Py_DECREF(src);
        Py_DECREF(dst);
        return NULL;
    }
    PyObject *item[SEGMENT_FIELDS] = {
        src, dst,
        PyLong_FromLong((long)be16(p + pos)), PyLong_FromLong((long)be16(p + pos + 2)),
        PyLong_FromUnsignedLong(be32(p + pos + 4)), PyLong_FromUnsignedLong(be32(p + pos + 8)),
        PyLong_FromLong(p[pos + 13]), PyLong_FromLong(r->ttl),
        r->ip_id < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(r->ip_id),
        PyBytes_FromStringAndSize((const char *)p + pos + 20, hlen - 20),
        PyBytes_FromStringAndSize((const char *)p + data, data < stop ? stop - data : 0),
        PyBool_FromLong(r->end > f->len),
    };
    int failed = 0;
    for (int i = 0; i < SEGMENT_FIELDS; i++) {
        failed |= item[i] == NULL;
        PyTuple_SET_ITEM(seg, i, item[i]); /* NULLs are fine in a tuple being dropped */
    }
    if (failed) {
        Py_DECREF(seg);
        return NULL;
    }
    return seg;
}

/* --- the --jobs share of a frame ------------------------------------------------------ */

static uint32_t crc_table[256];

/* zlib.crc32(data, crc): CRC-32 (IEEE 802.3, reflected), as zlib computes it. */
static uint32_t crc32_of(const unsigned char *data, size_t n, uint32_t crc)
{
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *data++) & 0xFF] ^ crc >> 8;
    return ~crc;
}

/* partition.share_hash of the frame's TCP connection: CRC-32 of its two endpoints (address
 * bytes, then the port big-endian), the lower first. 1 and *hash set when the frame is a TCP
 * segment this file decodes; 0 when decode() would skip it or hand it to Python. */
int ccore_share_hash(const unsigned char *frame, Py_ssize_t len, long linktype,
                     uint32_t *hash)
{
    Frame f = { frame, len, NULL };
    Parsed r;
    decode_link(&f, linktype, &r);
    if (r.found != FOUND_SEGMENT)
        return 0;
    unsigned char a[18], b[18];
    size_t n = (size_t)r.alen + 2;
    memcpy(a, r.src, (size_t)r.alen);
    memcpy(a + r.alen, frame + r.tcp, 2);
    memcpy(b, r.dst, (size_t)r.alen);
    memcpy(b + r.alen, frame + r.tcp + 2, 2);
    int lower = memcmp(a, b, n) <= 0;
    *hash = crc32_of(lower ? b : a, n, crc32_of(lower ? a : b, n, 0));
    return 1;
}

/* share_hash(linktype, frame): ccore_share_hash's value, or None (for the tests). */
PyObject *ccore_share_hash_py(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    long linktype;
    if (nargs != 2 || !PyBytes_Check(args[1]) || ((linktype = PyLong_AsLong(args[0])) == -1
                                                  && PyErr_Occurred())) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "share_hash(linktype, frame)");
        return NULL;
    }
    uint32_t hash;
    if (!ccore_share_hash((const unsigned char *)PyBytes_AS_STRING(args[1]),
                          PyBytes_GET_SIZE(args[1]), linktype, &hash))
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(hash);
}

/* decode(linktype, frame, skipped=None): the twin of linklayer.decode. Arguments of other
 * types or by keyword go to the Python decoder as they are. */
PyObject *ccore_decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                       PyObject *kwnames)
{
    (void)self;
    if (py_decode == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_ccore.bind() was not called");
        return NULL;
    }
    if (kwnames != NULL || nargs < 2 || nargs > 3 || !PyLong_CheckExact(args[0])
        || !PyBytes_CheckExact(args[1])
        || (nargs == 3 && args[2] != Py_None && !PyDict_CheckExact(args[2])))
        return PyObject_Vectorcall(py_decode, args, (size_t)nargs, kwnames);
    int overflow = 0;
    long long linktype = PyLong_AsLongLongAndOverflow(args[0], &overflow);
    if (overflow)
        return PyObject_Vectorcall(py_decode, args, (size_t)nargs, NULL);
    Frame f = { (const unsigned char *)PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]),
                nargs == 3 && args[2] != Py_None ? args[2] : NULL };
    Parsed r;
    decode_link(&f, linktype, &r);
    if (r.found == FOUND_FALLBACK)
        return PyObject_Vectorcall(py_decode, args, (size_t)nargs, NULL);
    if (r.found == FOUND_SKIP)
        return count_reason(&f, reasons[r.reason]);
    return segment_of(&f, &r);
}

/* bind(TcpSegment, python_decode): the segment class to build and the decoder to hand
 * frames to. TcpSegment must be a plain tuple subclass of 12 fields (a NamedTuple). */
PyObject *ccore_bind(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2 || !PyType_Check(args[0]) || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "bind(TcpSegment, decode)");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[0];
    if (!PyType_IsSubtype(type, &PyTuple_Type) || type->tp_basicsize != PyTuple_Type.tp_basicsize
        || type->tp_itemsize != PyTuple_Type.tp_itemsize) {
        PyErr_SetString(PyExc_TypeError, "TcpSegment must be a NamedTuple");
        return NULL;
    }
    Py_XSETREF(segment_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(py_decode, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

int ccore_decode_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ c >> 1 : c >> 1;
        crc_table[i] = c;
    }
    for (int i = 0; i < R_COUNT; i++) {
        reasons[i] = PyUnicode_InternFromString(reason_text[i]);
        if (reasons[i] == NULL)
            return -1;
    }
    return 0;
}

void ccore_decode_free(void)
{
    for (int i = 0; i < R_COUNT; i++)
        Py_CLEAR(reasons[i]);
    for (int i = 0; i < ADDR4_SLOTS; i++)
        Py_CLEAR(addr4_text[i]);
    Py_CLEAR(segment_type);
    Py_CLEAR(py_decode);
}
