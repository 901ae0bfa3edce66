/* formats.c: the pcap and pcapng record walks of the Walker (CaptureFile._pcap/_pcapng).
 *
 * Each *_next returns the next (time, link type, frame) tuple, or NULL at the end (no
 * exception: a note says why it stopped early) or on error (an exception). The read buffer
 * is refilled exactly as the Python walk refills it, so claimants see the same bytes.
 */
#include "walker.h"

#include <math.h>
#include <string.h>

#define BUF(w) ((const unsigned char *)PyBytes_AS_STRING((w)->buf))
#define LEN(w) PyBytes_GET_SIZE((w)->buf)

/* --- pcap --------------------------------------------------------------------------- */

/* Byte order and time unit from the file's magic (pcapfile.PCAP_MAGICS). */
int pcap_magic(Walker *w, PyObject *head)
{
    static const struct { const char magic[4]; int big; double unit; } magics[] = {
        { "\xd4\xc3\xb2\xa1", 0, 1e-6 }, { "\xa1\xb2\xc3\xd4", 1, 1e-6 },
        { "\x4d\x3c\xb2\xa1", 0, 1e-9 }, { "\xa1\xb2\x3c\x4d", 1, 1e-9 },
    };
    for (size_t i = 0; i < sizeof magics / sizeof magics[0]; i++) {
        if (PyBytes_GET_SIZE(head) == 4 && !memcmp(PyBytes_AS_STRING(head), magics[i].magic, 4)) {
            w->big = magics[i].big;
            w->unit = magics[i].unit;
            return 0;
        }
    }
    PyErr_SetString(PyExc_ValueError, "not a pcap magic number");
    return -1;
}

/* The file header after the magic: link type, record size limit, claim key offset. */
static int pcap_header(Walker *w)
{
    if (refill(w, 20) < 0)
        return -1;
    if (LEN(w) < 20) {
        note(w, "pcap file header truncated");
        return 0;
    }
    const unsigned char *p = BUF(w);
    uint32_t snaplen = rd32(p + 12, w->big), network = rd32(p + 16, w->big);
    w->linktype = (long)(network & 0x0FFFFFFF); /* upper bits may carry an FCS length */
    w->limit = snaplen > MAX_FRAME ? snaplen : MAX_FRAME;
    if (w->limit > MAX_BLOCK) /* a bigger record is damage whatever the snap length says */
        w->limit = MAX_BLOCK;
    int error = 0;
    w->key_at = key_offset(w, w->linktype, &error);
    w->pos = 20;
    return error ? -1 : 1;
}

PyObject *pcap_next(Walker *w)
{
    if (!w->started) {
        w->started = 1;
        int rc = pcap_header(w);
        if (rc <= 0)
            return NULL;
    }
    for (;;) {
        if (LEN(w) - w->pos < 16) {
            if (refill(w, w->chunk > 16 ? w->chunk : 16) < 0)
                return NULL;
            if (LEN(w) < 16) {
                if (LEN(w) && note(w, "capture truncated after %lld packets", w->count) < 0)
                    return NULL;
                return NULL;
            }
        }
        const unsigned char *p = BUF(w) + w->pos;
        uint32_t sec = rd32(p, w->big), frac = rd32(p + 4, w->big), incl = rd32(p + 8, w->big);
        if (incl > w->limit) {
            note(w, "corrupt pcap record after %lld packets (%u-byte frame), stopped", w->count,
                 incl);
            return NULL;
        }
        Py_ssize_t end = w->pos + 16 + (Py_ssize_t)incl;
        if (end > LEN(w)) {
            if (refill(w, (Py_ssize_t)incl + 16 > w->chunk ? (Py_ssize_t)incl + 16 : w->chunk) < 0)
                return NULL;
            end = 16 + (Py_ssize_t)incl;
            if (end > LEN(w)) {
                note(w, "capture truncated after %lld packets", w->count);
                return NULL;
            }
        }
        double ts = (double)sec + (double)frac * w->unit;
        Py_ssize_t start = w->pos + 16;
        if (w->parts > 1 && other_share(w, start, end, w->linktype)) {
            if (took(w, w->count) < 0)
                return NULL;
            w->count++;
            w->pos = end;
            continue;
        }
        if (w->key_at != NO_KEY && PyDict_GET_SIZE(w->claims)) {
            int taken = offer(w, w->key_at, start, end, ts, w->linktype);
            if (taken < 0 || (taken && took(w, w->count) < 0))
                return NULL;
            if (taken) {
                w->count++;
                w->pos = end;
                continue;
            }
        }
        w->count++;
        w->pos = end;
        return packet(ts, w->linktype, (const char *)BUF(w) + start, end - start);
    }
}

/* --- pcapng ------------------------------------------------------------------------- */

/* The least length of a block of type `btype`: header, fixed fields, trailer. */
static uint32_t min_block(uint32_t btype)
{
    switch (btype) {
    case EPB: case PB: return 32;
    case IDB: case DSB: return 20;
    default: return 12;
    }
}

/* The first opt_comment among the options in buf[pos:stop] (pcapfile._comment), set on
 * capture.comment; 0 when there is none, -1 on error. */
static int set_comment(Walker *w, Py_ssize_t pos, Py_ssize_t stop)
{
    const unsigned char *p = BUF(w);
    while (pos + 4 <= stop) {
        uint32_t code = rd16(p + pos, w->big), length = rd16(p + pos + 2, w->big);
        if (code == 0)
            break;
        if (code == OPT_COMMENT) {
            Py_ssize_t end = pos + 4 + length < stop ? pos + 4 + length : stop;
            PyObject *text = PyUnicode_DecodeUTF8((const char *)p + pos + 4, end - pos - 4,
                                                  "replace");
            if (text == NULL || PyObject_SetAttr(w->capture, s_comment, text) < 0) {
                Py_XDECREF(text);
                return -1;
            }
            Py_DECREF(text);
            w->comment_set = 1;
            return 0;
        }
        pos += 4 + ((length + 3) & ~3u);
    }
    return 0;
}

/* An Interface Description Block at body..stop (CaptureFile._interface). */
static int add_interface(Walker *w, Py_ssize_t body, Py_ssize_t stop)
{
    const unsigned char *p = BUF(w);
    Iface iface = { (long)rd16(p + body, w->big), 1e-6, 0, NO_KEY };
    for (Py_ssize_t pos = body + 8; pos + 4 <= stop;) {
        uint32_t code = rd16(p + pos, w->big), length = rd16(p + pos + 2, w->big);
        if (code == 0)
            break;
        Py_ssize_t value = pos + 4;
        Py_ssize_t vlen = (value + length < stop ? value + length : stop) - value;
        if (code == OPT_TSRESOL && vlen >= 1) {
            unsigned v = p[value];
            iface.tick = v & 0x80 ? ldexp(1.0, -(int)(v & 0x7F)) : pow(10.0, -(double)v);
        } else if (code == OPT_TSOFFSET && vlen >= 8) {
            uint64_t hi = rd32(p + value + (w->big ? 0 : 4), w->big);
            uint64_t lo = rd32(p + value + (w->big ? 4 : 0), w->big);
            iface.offset = (long long)(hi << 32 | lo);
        }
        pos += 4 + ((length + 3) & ~3u);
    }
    int error = 0;
    iface.key_at = key_offset(w, iface.linktype, &error);
    if (error)
        return -1;
    if (w->n_ifaces == w->cap_ifaces) {
        Py_ssize_t cap = w->cap_ifaces ? w->cap_ifaces * 2 : 4;
        Iface *grown = w->ifaces;
        PyMem_Resize(grown, Iface, (size_t)cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        w->ifaces = grown;
        w->cap_ifaces = cap;
    }
    w->ifaces[w->n_ifaces++] = iface;
    return 0;
}

/* A Decryption Secrets Block: handed to capture._secrets(type, bytes), which keeps a TLS
 * key log (up to its limit) and notes the rest, as the Python walk does. */
static int add_secrets(Walker *w, Py_ssize_t body, Py_ssize_t stop)
{
    const unsigned char *p = BUF(w);
    uint32_t stype = rd32(p + body, w->big), slen = rd32(p + body + 4, w->big);
    Py_ssize_t start = body + 8;
    Py_ssize_t end = (Py_ssize_t)slen < stop - start ? start + (Py_ssize_t)slen : stop;
    if (end < start)
        end = start;
    PyObject *r = PyObject_CallMethod(w->capture, "_secrets", "(ky#)", (unsigned long)stype,
                                      (const char *)p + start, end - start);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* An Enhanced (or obsolete) Packet Block: 1 and *out set when a frame is handed out, 0
 * when it was claimed or skipped, -1 on error. */
static int packet_block(Walker *w, uint32_t btype, Py_ssize_t body, Py_ssize_t end,
                        PyObject **out)
{
    const unsigned char *p = BUF(w);
    uint32_t ifid = btype == EPB ? rd32(p + body, w->big) : rd16(p + body, w->big);
    uint64_t tsh = rd32(p + body + 4, w->big), tsl = rd32(p + body + 8, w->big);
    uint32_t caplen = rd32(p + body + 12, w->big);
    Py_ssize_t data = body + 20;
    if (data + (Py_ssize_t)caplen > end - 4 || ifid >= (uint64_t)w->n_ifaces) {
        const char *what = ifid >= (uint64_t)w->n_ifaces ? "unknown interface" : "bad length";
        return skip(w, "skipped a packet block (%s) after %lld packets", what, w->count);
    }
    const Iface *iface = &w->ifaces[ifid];
    w->last_ts = (double)(tsh << 32 | tsl) * iface->tick + (double)iface->offset;
    Py_ssize_t opts = data + (Py_ssize_t)((caplen + 3) & ~3u);
    if (opts < end - 4 && set_comment(w, opts, end - 4) < 0)
        return -1;
    if (w->parts > 1 && !w->comment_set
        && other_share(w, data, data + caplen, iface->linktype)) {
        if (took(w, w->count) < 0)
            return -1;
        w->count++;
        return 0;
    }
    if (PyDict_GET_SIZE(w->claims) && !w->comment_set && iface->key_at != NO_KEY) {
        int taken = offer(w, iface->key_at, data, data + caplen, w->last_ts, iface->linktype);
        if (taken < 0 || (taken && took(w, w->count) < 0))
            return -1;
        if (taken) {
            w->count++;
            return 0;
        }
    }
    *out = packet(w->last_ts, iface->linktype, (const char *)BUF(w) + data, caplen);
    w->count++;
    return *out == NULL ? -1 : 1;
}

/* A Simple Packet Block: the first interface's frame, at the last time stamp seen. */
static int simple_block(Walker *w, Py_ssize_t body, uint32_t blen, PyObject **out)
{
    if (w->n_ifaces == 0)
        return skip(w, "skipped a simple packet block (no interface)");
    long long orig = rd32(BUF(w) + body, w->big);
    long long caplen = orig < (long long)blen - 16 ? orig : (long long)blen - 16;
    *out = packet(w->last_ts, w->ifaces[0].linktype, (const char *)BUF(w) + body + 4,
                  caplen > 0 ? (Py_ssize_t)caplen : 0);
    w->count++;
    return *out == NULL ? -1 : 1;
}

/* The next block's header, read and checked; its length in *blen, 0 to stop. */
static int block_header(Walker *w, uint32_t *btype, uint32_t *blen)
{
    if (LEN(w) - w->pos < 12) {
        if (refill(w, w->chunk > 16 ? w->chunk : 16) < 0)
            return -1;
        if (LEN(w) < 12) {
            if (LEN(w) && note(w, "capture truncated after %lld packets", w->count) < 0)
                return -1;
            return 0;
        }
    }
    const unsigned char *p = BUF(w) + w->pos;
    *btype = rd32(p, w->big);
    if (*btype == SHB) { /* the same bytes in either byte order */
        if (!memcmp(p + 8, "\x4d\x3c\x2b\x1a", 4)) {
            w->big = 0;
        } else if (!memcmp(p + 8, "\x1a\x2b\x3c\x4d", 4)) {
            w->big = 1;
        } else {
            return note(w, "corrupt pcapng section header after %lld packets", w->count);
        }
        w->n_ifaces = 0;
    }
    *blen = rd32(p + 4, w->big);
    if (*blen < min_block(*btype) || *blen % 4 || *blen > MAX_BLOCK) {
        return note(w, "corrupt pcapng block (type 0x%x, length %u) after %lld packets, stopped",
                    *btype, *blen, w->count);
    }
    return 1;
}

PyObject *pcapng_next(Walker *w)
{
    for (;;) {
        uint32_t btype = 0, blen = 0;
        int rc = block_header(w, &btype, &blen);
        if (rc <= 0)
            return NULL;
        Py_ssize_t end = w->pos + (Py_ssize_t)blen;
        if (end > LEN(w)) {
            if (refill(w, (Py_ssize_t)blen > w->chunk ? (Py_ssize_t)blen : w->chunk) < 0)
                return NULL;
            end = blen;
            if (end > LEN(w)) {
                note(w, "capture truncated after %lld packets", w->count);
                return NULL;
            }
        }
        if (rd32(BUF(w) + end - 4, w->big) != blen) {
            note(w, "corrupt pcapng block (type 0x%x: length fields differ) after %lld "
                    "packets, stopped", btype, w->count);
            return NULL;
        }
        Py_ssize_t body = w->pos + 8;
        PyObject *out = NULL;
        rc = 0;
        if (btype == EPB || btype == PB)
            rc = packet_block(w, btype, body, end, &out);
        else if (btype == SPB)
            rc = simple_block(w, body, blen, &out);
        else if (btype == IDB)
            rc = add_interface(w, body, end - 4);
        else if (btype == DSB)
            rc = add_secrets(w, body, end - 4);
        /* SHB, name resolution, statistics, custom and unknown blocks: nothing to hand out */
        if (rc < 0)
            return NULL;
        w->pos = end;
        if (out != NULL)
            return out;
    }
}
