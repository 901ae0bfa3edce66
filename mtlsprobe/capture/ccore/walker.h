/* walker.h: the Walker's state and helpers, shared by walk.c (the type, buffer, claims)
 * and formats.c (the pcap and pcapng record walks). */
#ifndef MTLSPROBE_WALKER_H
#define MTLSPROBE_WALKER_H

#include "ccore.h"

enum { CHUNK = 1 << 17, MAX_FRAME = 262144, MAX_BLOCK = 64 << 20, PROGRESS_EVERY = 4095 };
enum { SHB = 0x0A0D0D0A, IDB = 1, PB = 2, SPB = 3, EPB = 6, DSB = 0x0A };
enum { TLS_KEY_LOG = 0x544C534B, OPT_COMMENT = 1, OPT_TSRESOL = 9, OPT_TSOFFSET = 14 };
enum { NO_KEY = -1 }; /* an interface whose link type has no claim key offset */

/* One pcapng interface: link type, seconds per tick, offset seconds, claim key offset. */
typedef struct {
    long linktype;
    double tick;
    long long offset;
    Py_ssize_t key_at;
} Iface;

typedef struct {
    PyObject_HEAD
    PyObject *capture;      /* the CaptureFile (notes, comment, claimed, _secrets...) */
    PyObject *stream;       /* what .read(n) gives the file's bytes */
    PyObject *notes;        /* capture.notes (a list) */
    PyObject *claims;       /* capture.claims: 12-byte key -> claimant */
    PyObject *claim_at;     /* capture.claim_at: link type -> key offset */
    PyObject *claim_extra;  /* capture.claim_extra: link type -> more key offsets */
    PyObject *buf;          /* the read buffer (bytes) */
    Py_ssize_t pos;         /* where the next record or block starts in buf */
    Py_ssize_t chunk;       /* bytes a refill reads at least (pcapfile.CHUNK) */
    long long count;        /* frames read (yielded or claimed) */
    long long claimed;      /* frames claimed, in all */
    long long claimed_told; /* ...as capture.claimed last said */
    int pcapng, started, done, comment_set;
    long part, parts;        /* capture.share: frames of other --jobs shares are dropped */
    /* pcap */
    int big;
    double unit;
    uint32_t limit;
    long linktype;
    Py_ssize_t key_at;       /* NO_KEY: no claims for this link type */
    /* pcapng */
    Iface *ifaces;
    Py_ssize_t n_ifaces, cap_ifaces;
    double last_ts;
} Walker;

extern PyObject *s_read, *s_comment, *s_claimed, *s_progress, *s_position,
    *s_size;

/* walk.c */
int note(Walker *w, const char *fmt, ...);
int skip(Walker *w, const char *fmt, ...);
int refill(Walker *w, Py_ssize_t want);
int took(Walker *w, long long count);
int offer(Walker *w, Py_ssize_t key_at, Py_ssize_t start, Py_ssize_t end, double ts,
          long linktype);
Py_ssize_t key_offset(Walker *w, long linktype, int *error);
int other_share(const Walker *w, Py_ssize_t start, Py_ssize_t end, long linktype);
PyObject *packet(double ts, long linktype, const char *frame, Py_ssize_t len);

/* formats.c: the next frame (NULL at the end, or on error with an exception set) */
int pcap_magic(Walker *w, PyObject *head);
PyObject *pcap_next(Walker *w);
PyObject *pcapng_next(Walker *w);

#endif
