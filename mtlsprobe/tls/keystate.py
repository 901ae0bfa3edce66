"""Record keys of one observed connection: what a key log opens, per side.

Sans-IO: secrets in (from a parsed :class:`~mtlsprobe.tls.keylog.KeyLog`), plaintext out.
:class:`KeySchedule` looks a connection's secrets up once and derives the keys (the TLS 1.2
key block at each ChangeCipherSpec, the TLS 1.3 handshake and application traffic
secrets at the ServerHello); :class:`KeyState` holds one direction's keys and opens its
records with them (:mod:`mtlsprobe.tls.decrypt` does the AEAD work), following the key
changes: Finished (TLS 1.3: the application key), KeyUpdate, and a gap (the AEAD sequence
number is unknown after it, so the keys are dropped).

Remarks go to the ``note`` callable the caller passes (the observer's ``note``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mtlsprobe.tls import keylog as kl
from mtlsprobe.tls.decrypt import (
    DecryptError,
    Tls12Decryptor,
    Tls12Keys,
    Tls13Decryptor,
    UnsupportedSuite,
    aead_spec,
    hkdf_expand_label,
    tls12_keys,
)
from mtlsprobe.tls.keylog import KeyLog
from mtlsprobe.tls.records import Record

Note = Callable[[str], None]


class KeyState:
    """The keys one direction's records are opened with (none without a key log).

    A __slots__ class: two per connection, built whether or not a key log is given.
    """

    __slots__ = ("app_secret", "client", "dec", "failed", "next_dec")

    def __init__(self, client: bool) -> None:
        self.client = client
        self.dec: Tls13Decryptor | Tls12Decryptor | None = None
        self.next_dec: Tls13Decryptor | None = None  # TLS 1.3: the application-traffic key
        self.app_secret: bytes | None = None  # TLS 1.3: for KeyUpdate
        self.failed = False  # a record did not decrypt (noted once)

    def ready(self) -> bool:
        """Whether there is a key to try on this side's next record."""
        return self.dec is not None or self.next_dec is not None

    def drop(self) -> bool:
        """Forget the keys (after a gap the AEAD sequence number is unknown). False: there
        were none."""
        if self.dec is None and self.next_dec is None:
            return False
        self.dec = self.next_dec = None
        self.app_secret = None
        return True

    def count(self) -> None:
        """A record that is counted, not opened: only its sequence number matters."""
        dec = self.dec
        if dec is not None:
            if isinstance(dec, Tls12Decryptor):
                dec.skip()
            else:
                dec.seq += 1

    def _failed(self, version: str, note: Note) -> None:
        if not self.failed:
            self.failed = True
            who = "client" if self.client else "server"
            note(f"{who} TLS {version} record did not decrypt with the key log")

    def open12(self, rec: Record, note: Note) -> bytes | None:
        """A TLS 1.2 record's plaintext (None: no TLS 1.2 key, or it did not decrypt; then
        the key is dropped)."""
        dec = self.dec
        if not isinstance(dec, Tls12Decryptor):
            return None
        try:
            _, plain = dec.decrypt(rec.header, rec.payload)
        except DecryptError:
            self._failed("1.2", note)
            self.dec = None
            return None
        return plain

    def open13(self, rec: Record, note: Note) -> tuple[int, bytes] | None:
        """A TLS 1.3 record's inner content type and content, tried with the current key
        and then the application key, which replaces it when it fits (None: no key opened
        it; then both are dropped)."""
        for attempt in (self.dec, self.next_dec):
            if not isinstance(attempt, Tls13Decryptor):
                continue
            try:
                result = attempt.decrypt(rec.header, rec.payload)
            except DecryptError:
                continue
            if attempt is self.next_dec:
                self.dec, self.next_dec = self.next_dec, None
            return result
        if self.dec is not None or self.next_dec is not None:
            self._failed("1.3", note)
            self.dec = self.next_dec = None
        return None

    def finished(self) -> None:
        """TLS 1.3: this side's Finished was read, its next records use the application key."""
        if self.next_dec is not None:
            self.dec, self.next_dec = self.next_dec, None

    def key_update(self, suite: int) -> None:
        """TLS 1.3 KeyUpdate: later records of this side use the next application key.

        RFC 8446 §7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N,
        "traffic upd", "", Hash.length).
        """
        if self.app_secret is None:
            return
        h = aead_spec(suite).hash()
        self.app_secret = hkdf_expand_label(self.app_secret, "traffic upd", b"", h.digest_size, h)
        self.dec = Tls13Decryptor(suite, self.app_secret)


class KeySchedule:
    """Where one connection's keys come from: its key log (None: records stay opaque)."""

    __slots__ = ("_block12", "_started13", "keylog")

    def __init__(self, keylog: KeyLog | None) -> None:
        self.keylog = keylog
        self._started13 = False
        # the TLS 1.2 key block and its inputs: the second side's CCS reuses it
        self._block12: tuple[tuple[int, bytes, bytes, bytes], Tls12Keys] | None = None

    def tls12(
        self, keys: KeyState, suite: int, client_random: bytes, server_random: bytes, note: Note
    ) -> None:
        """A side's ChangeCipherSpec: set its key from the latest hellos' key block."""
        if self.keylog is None:
            return
        master = self.keylog.get(client_random, kl.CLIENT_RANDOM)
        if master is None:
            note("key log has no CLIENT_RANDOM secret for this connection's client random")
            return
        inputs = (suite, master, client_random, server_random)
        if self._block12 is not None and self._block12[0] == inputs:
            block = self._block12[1]  # the other side's CCS already derived this key block
        else:
            try:
                block = tls12_keys(*inputs)
            except UnsupportedSuite as exc:
                note(f"TLS 1.2 records not decrypted: {exc}")
                return
            self._block12 = (inputs, block)
        if keys.client:
            keys.dec = Tls12Decryptor(suite, block.client_key, block.client_iv)
        else:
            keys.dec = Tls12Decryptor(suite, block.server_key, block.server_iv)

    def tls13(
        self,
        suite: int,
        client_random: bytes,
        sides: Iterable[tuple[KeyState, bool]],
        note: Note,
    ) -> None:
        """The TLS 1.3 ServerHello: set each side's handshake and application traffic keys
        (once per connection). ``sides``: each side's keys, and whether a gap came before
        (then its AEAD sequence numbers are unknown and it gets none)."""
        if self._started13:
            return
        self._started13 = True
        if self.keylog is None:
            note(
                "TLS 1.3 without a key log: the server certificate, CertificateRequest and "
                "client Certificate are encrypted, so they are unknown"
            )
            return
        secrets = self.keylog.secrets(client_random)
        if not secrets:
            note(
                "TLS 1.3: the key log has no secrets for this connection's client random, "
                "so the encrypted handshake is unknown"
            )
            return
        try:
            aead_spec(suite)
        except UnsupportedSuite as exc:
            note(f"TLS 1.3 records not decrypted: {exc}")
            return
        for keys, gapped in sides:
            who = "client" if keys.client else "server"
            if gapped:
                note(
                    f"{who} records not decrypted: a gap came before them, so "
                    "their AEAD sequence numbers are unknown"
                )
                continue
            if keys.client:
                hs_label, ap_label = kl.CLIENT_HANDSHAKE_TRAFFIC_SECRET, kl.CLIENT_TRAFFIC_SECRET_0
            else:
                hs_label, ap_label = kl.SERVER_HANDSHAKE_TRAFFIC_SECRET, kl.SERVER_TRAFFIC_SECRET_0
            hs, ap = secrets.get(hs_label), secrets.get(ap_label)
            if hs is not None:
                keys.dec = Tls13Decryptor(suite, hs)
            if ap is not None:
                keys.next_dec = Tls13Decryptor(suite, ap)
                keys.app_secret = ap
            if hs is None or ap is None:
                note(f"key log lacks some {who} TLS 1.3 secrets")
