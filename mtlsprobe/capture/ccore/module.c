/* module.c: mtlsprobe.capture._ccore, the optional C capture core.
 *
 * The twin of the pure-Python capture path, behind capture/core.py:
 *   Walker(capture, stream, head, pcapng)  pcap/pcapng walk (walk.c, formats.c), as
 *                                          CaptureFile's _pcap/_pcapng;
 *   decode(linktype, frame, skipped=None)  frame -> TcpSegment (decode.c), as
 *                                          linklayer.decode, after bind(TcpSegment, decode);
 *   share_hash(linktype, frame)            the frame's --jobs share hash (decode.c), as
 *                                          partition.share_hash; the Walker drops frames
 *                                          of other shares (capture.share) with it;
 *   LeaseCore                              the bulk shortcut's lease (lease.c), the base of
 *                                          bulk.CLease; the Walker calls its take() directly;
 *   ShareCore                              the same for bulk.COtherShare (--jobs);
 *   StreamCore(max_bytes)                  TCP reassembly of one direction (stream.c), as
 *                                          tcp.TcpReassembler.
 * CPython C API only, no other library. Results are identical to the Python code's (the
 * differential and fuzz tests hold them to it); what C does not decode it hands to Python.
 */
#include "ccore.h"

static PyMethodDef methods[] = {
    { "decode", (PyCFunction)(void (*)(void))ccore_decode, METH_FASTCALL | METH_KEYWORDS,
      "decode(linktype, frame, skipped=None): the frame's TcpSegment or None (reason "
      "counted in skipped), as linklayer.decode." },
    { "bind", (PyCFunction)(void (*)(void))ccore_bind, METH_FASTCALL,
      "bind(TcpSegment, decode): the segment class to build and the Python decoder for "
      "what C does not decode." },
    { "share_hash", (PyCFunction)(void (*)(void))ccore_share_hash_py, METH_FASTCALL,
      "share_hash(linktype, frame): partition.share_hash of the frame's TCP connection, as "
      "the Walker computes it to drop other --jobs shares' frames; None when the frame is "
      "not a TCP segment C decodes." },
    { NULL, NULL, 0, NULL },
};

static void module_free(void *module)
{
    (void)module;
    ccore_decode_free();
}

static struct PyModuleDef ccore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mtlsprobe.capture._ccore",
    .m_doc = "The optional C capture core: pcap/pcapng walk and frame decoding, the twin of "
             "the pure-Python capture path (see mtlsprobe.capture.core).",
    .m_size = -1,
    .m_methods = methods,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__ccore(void)
{
    if (ccore_decode_init() < 0 || ccore_walk_init() < 0 || ccore_lease_init() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&ccore_module);
    if (m == NULL)
        return NULL;
    /* capture/core.py runs this core only when it expects the same API (a stale build
     * after a source change is ignored, not half used) */
    if (PyModule_AddIntConstant(m, "API_VERSION", CCORE_API_VERSION) < 0
        || PyModule_AddObjectRef(m, "Walker", (PyObject *)&ccore_WalkerType) < 0
        || PyModule_AddObjectRef(m, "LeaseCore", (PyObject *)&ccore_LeaseType) < 0
        || PyModule_AddObjectRef(m, "ShareCore", (PyObject *)&ccore_ShareType) < 0
        || PyType_Ready(&ccore_StreamType) < 0
        || PyModule_AddObjectRef(m, "StreamCore", (PyObject *)&ccore_StreamType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
