"""NSS key log text (SSLKEYLOGFILE) -> secrets indexed by client random.

Format: https://firefox-source-docs.mozilla.org/security/nss/legacy/key_log_format/
``<LABEL> <client_random hex> <secret hex>`` per line; ``#`` comments. Lines we cannot
read are counted and skipped, never fatal: a key log is often appended to by several
programs. Several key logs (files, embedded ones) merge into one with ``merge_keylogs``.
Sans-IO: the caller reads the files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

CLIENT_RANDOM = "CLIENT_RANDOM"  # TLS <= 1.2: the 48-byte master secret
CLIENT_HANDSHAKE_TRAFFIC_SECRET = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
SERVER_HANDSHAKE_TRAFFIC_SECRET = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
CLIENT_TRAFFIC_SECRET_0 = "CLIENT_TRAFFIC_SECRET_0"
SERVER_TRAFFIC_SECRET_0 = "SERVER_TRAFFIC_SECRET_0"
EXPORTER_SECRET = "EXPORTER_SECRET"
CLIENT_EARLY_TRAFFIC_SECRET = "CLIENT_EARLY_TRAFFIC_SECRET"
EARLY_EXPORTER_SECRET = "EARLY_EXPORTER_SECRET"

KNOWN_LABELS = frozenset(
    {
        CLIENT_RANDOM,
        CLIENT_HANDSHAKE_TRAFFIC_SECRET,
        SERVER_HANDSHAKE_TRAFFIC_SECRET,
        CLIENT_TRAFFIC_SECRET_0,
        SERVER_TRAFFIC_SECRET_0,
        EXPORTER_SECRET,
        CLIENT_EARLY_TRAFFIC_SECRET,
        EARLY_EXPORTER_SECRET,
    }
)


@dataclass(frozen=True, slots=True)
class KeyLog:
    """Secrets per client random: ``{client_random: {label: secret}}``."""

    entries: dict[bytes, dict[str, bytes]] = field(default_factory=dict)
    skipped_lines: int = 0

    @classmethod
    def parse(cls, text: str) -> KeyLog:
        entries: dict[bytes, dict[str, bytes]] = {}
        skipped = 0
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 3 or parts[0] not in KNOWN_LABELS:
                skipped += 1
                continue
            label, random_hex, secret_hex = parts
            try:
                random = bytes.fromhex(random_hex)
                secret = bytes.fromhex(secret_hex)
            except ValueError:
                skipped += 1
                continue
            if len(random) != 32 or not secret:
                skipped += 1
                continue
            entries.setdefault(random, {})[label] = secret
        return cls(entries=entries, skipped_lines=skipped)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, client_random: object) -> bool:
        return client_random in self.entries

    def secrets(self, client_random: bytes) -> dict[str, bytes]:
        return self.entries.get(client_random, {})

    def get(self, client_random: bytes, label: str) -> bytes | None:
        return self.entries.get(client_random, {}).get(label)


def merge_keylogs(*logs: KeyLog | None) -> KeyLog | None:
    """One KeyLog holding every secret of ``logs`` (later logs win on conflicts)."""
    present = [k for k in logs if k is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    entries: dict[bytes, dict[str, bytes]] = {}
    for log in present:
        for random, secrets in log.entries.items():
            entries.setdefault(random, {}).update(secrets)
    return KeyLog(entries=entries, skipped_lines=sum(k.skipped_lines for k in present))


def parse_keylogs(texts: Iterable[str]) -> KeyLog | None:
    """Several key log texts as one KeyLog (later texts win); None when all are blank."""
    return merge_keylogs(*(KeyLog.parse(t) for t in texts if t.strip()))
