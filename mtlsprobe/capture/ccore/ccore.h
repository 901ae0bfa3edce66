/* ccore.h: what the C capture core's files share (see module.c for the overview). */
#ifndef MTLSPROBE_CCORE_H
#define MTLSPROBE_CCORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Bumped whenever what capture/core.py and the Python callers expect changes (its API). */
#define CCORE_API_VERSION 2

/* Big-endian reads from a byte buffer the caller has bounds-checked. */
static inline uint32_t be16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }
static inline uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
/* Reads in a capture's byte order (big: nonzero for big-endian). */
static inline uint32_t rd16(const unsigned char *p, int big)
{
    return big ? be16(p) : (uint32_t)p[1] << 8 | p[0];
}
static inline uint32_t rd32(const unsigned char *p, int big)
{
    return big ? be32(p)
               : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* walk.c: the Walker type (pcap/pcapng frames), ready once ccore_walk_init succeeds. */
extern PyTypeObject ccore_WalkerType;
int ccore_walk_init(void);

/* lease.c: the bulk shortcut's claimants (bulk.CLease's and bulk.COtherShare's bases). */
extern PyTypeObject ccore_LeaseType, ccore_ShareType;
int ccore_lease_take(PyObject *lease, PyObject *buf, Py_ssize_t at, Py_ssize_t end, double ts,
                     long linktype);
int ccore_share_take(PyObject *share, PyObject *buf, Py_ssize_t at, Py_ssize_t end,
                     long linktype);
int ccore_lease_init(void);

/* stream.c: one direction's TCP reassembly (tcp.TcpReassembler's twin). */
extern PyTypeObject ccore_StreamType;

/* decode.c: frame -> TcpSegment, the twin of linklayer.decode. */
PyObject *ccore_decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                       PyObject *kwnames);
PyObject *ccore_bind(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
int ccore_share_hash(const unsigned char *frame, Py_ssize_t len, long linktype,
                     uint32_t *hash);
PyObject *ccore_share_hash_py(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
int ccore_decode_init(void);
void ccore_decode_free(void);

#endif
