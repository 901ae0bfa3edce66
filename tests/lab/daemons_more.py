"""More real middleboxes for the lab (tests/lab/test_lab_middleboxes.py): terminators (HAProxy
offload, Apache httpd, Caddy, stunnel, nginx passing the client certificate in headers), an
L4 pool with one terminating member, and interceptors (sslsplit, squid ssl-bump).

Same rules as daemons.py: configs are templates from lab/, every daemon runs in the
foreground as a child of the test inside its namespace, is declared ready by a poll-connect
or a log line, and keys are written 0600. The certificates a box needs beyond the lab PKI
(its backend client certificate, a self-signed leaf, an inspection CA) are made here, in the
daemon's own work dir.
"""

from __future__ import annotations

import datetime as dt
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from cryptography.x509.oid import NameOID

from mtlsprobe.live import pki

from .daemons import (
    SERVER_NAME,
    Daemon,
    LabPKI,
    Nginx,
    private_dir,
    render,
    write_private,
)
from .netns import ADDR, Topology

BOTH_PORTS = (8383, 8443)
SQUID_CERTGEN = Path("/usr/lib/squid/security_file_certgen")

#: HaproxyOffload's ca-file: which lab CA files it trusts for client certificates
OFFLOAD_CAS = {"server-root": ("server-root.pem",),
               "server-root+client-ca": ("server-root.pem", "client-ca.pem")}

#: Squid's ssl_bump rules by name (see Squid)
SQUID_RULES = {
    "bump": ("ssl_bump peek step1", "ssl_bump stare step2", "ssl_bump bump all"),
    "splice": ("ssl_bump peek step1", "ssl_bump splice all"),
    "bump-8443": ("acl bump_port port 8443", "ssl_bump peek step1",
                  "ssl_bump splice !bump_port", "ssl_bump stare step2", "ssl_bump bump all"),
}


# --- certificates a middlebox brings along ---------------------------------------------------


def write_issued(issued: pki.Issued, directory: Path, name: str) -> tuple[Path, Path]:
    """`name.pem` (chain) and `name-key.pem` (0600) in `directory`."""
    return (write_private(directory / f"{name}.pem", issued.chain_pem),
            write_private(directory / f"{name}-key.pem", issued.key_pem()))


def backend_client_cert(lab_pki: LabPKI, name: str, directory: Path) -> tuple[Path, Path]:
    """A client certificate from the lab client CA: the server accepts the box's own
    connections, so what the agent's certificate does is the only thing left to judge."""
    issued = lab_pki.client_ca.issue(name, eku=(pki.CLIENT_AUTH,))
    return write_issued(issued, directory, name)


def inspection_ca() -> pki.CA:
    """An interception CA as an admin would make one: a neutral name, nothing product-like."""
    return pki.CA("Lab TLS Inspection CA", org="lab secops")


def self_signed(name: str) -> pki.Issued:
    """What `openssl req -x509 -subj /CN=NAME -addext subjectAltName=DNS:NAME` makes (Debian's
    v3_ca: CA:TRUE, no key usage limits), as stunnel's docs have admins do."""
    key = pki.new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    return pki.Issued(cert, key)


def agent_pkcs12(lab_pki: LabPKI, directory: Path) -> tuple[Path, Path]:
    """The agent's certificate and key as PKCS#12 with a password file (both 0600)."""
    password = b"lab-agent-secret"
    blob = pkcs12.serialize_key_and_certificates(
        b"lab-agent-01", lab_pki.agent.key, lab_pki.agent.cert, None,
        BestAvailableEncryption(password))
    return (write_private(directory / "agent.p12", blob),
            write_private(directory / "agent-p12.pw", password + b"\n"))


# --- terminators -------------------------------------------------------------------------------


class HaproxyOffload(Daemon):
    """HAProxy SSL offload on 8383/8443 with the SERVER's own certificate and key, verifying
    client certificates against `ca` ("server-root", or "server-root+client-ca" so that the
    agent's certificate is accepted too), re-encrypting with its own client certificate."""

    name = "haproxy-offload"
    program = "haproxy"
    def __init__(self, topo: Topology, workdir: Path, lab_pki: LabPKI, ca: str = "server-root"):
        super().__init__(topo, "middlebox", workdir)
        self.pki = lab_pki
        self.ca_files = OFFLOAD_CAS[ca]

    def argv(self) -> list[str]:
        p, d = self.pki, self.workdir
        server_pem = write_private(d / "server-combined.pem",
                                   p.server.chain_pem + p.server.key_pem())
        ca_file = write_private(d / "client-ca-file.pem",
                                b"".join(p.path(n).read_bytes() for n in self.ca_files))
        cert, key = backend_client_cert(p, "haproxy-backend", d)
        backend_pem = write_private(d / "backend-combined.pem",
                                    cert.read_bytes() + key.read_bytes())
        text = render("haproxy-offload.cfg", listen=ADDR.middlebox, server=ADDR.server,
                      server_pem=server_pem, ca_file=ca_file, backend_pem=backend_pem,
                      server_root=p.path("server-root.pem"))
        return ["haproxy", "-db", "-f", str(write_private(d / "haproxy.cfg", text))]

    def wait_ready(self) -> None:
        for port in BOTH_PORTS:
            self.wait_tcp(ADDR.middlebox, port)


class NginxHeaderTerminator(Nginx):
    """nginx terminating with the LB CA's certificate, passing the client certificate on in
    X-SSL-Client-Cert ($ssl_client_escaped_cert), re-encrypting with its own client
    certificate. `ports` maps its listening ports to the server's."""

    name = "nginx-header-terminator"
    template = "nginx-terminator-headers.conf"

    def __init__(self, topo: Topology, role: str, workdir: Path, lab_pki: LabPKI, *,
                 ports: dict[int, int], verify: str = "on") -> None:
        super().__init__(topo, role, workdir)
        self.pki = lab_pki
        self.port_map = ports
        self.ports = tuple(ports)
        self.verify = verify

    @property
    def listen_host(self) -> str:
        return ADDR.middlebox if self.role == "middlebox" else ADDR.server

    def values(self) -> dict[str, Any]:
        p = self.pki
        cert, key = backend_client_cert(p, "nginx-backend", self.workdir)
        (front_a, back_a), (front_b, back_b) = self.port_map.items()
        return {"workdir": self.workdir, "listen": self.listen_host, "server": ADDR.server,
                "cert": p.path("lb.pem"), "key": p.path("lb-key.pem"),
                "client_ca": p.path("client-ca.pem"), "verify": self.verify,
                "server_root": p.path("server-root.pem"), "backend_cert": cert,
                "backend_key": key, "front_a": front_a, "back_a": back_a,
                "front_b": front_b, "back_b": back_b}


def pool_member(topo: Topology, workdir: Path, lab_pki: LabPKI) -> NginxHeaderTerminator:
    """The pool's terminating member: in the server namespace on 9383/9443, no client
    certificate asked, forwarding to the real server's 8383/8443."""
    member = NginxHeaderTerminator(topo, "server", workdir, lab_pki,
                                   ports={9383: 8383, 9443: 8443}, verify="off")
    member.name = "nginx-pool-member"
    return member


class HaproxyPool(Daemon):
    """HAProxy mode tcp, roundrobin over the real server and the terminating member."""

    name = "haproxy-pool"
    program = "haproxy"

    def __init__(self, topo: Topology, workdir: Path) -> None:
        super().__init__(topo, "middlebox", workdir)

    def argv(self) -> list[str]:
        text = render("haproxy-pool.cfg", listen=ADDR.middlebox, server=ADDR.server,
                      member=ADDR.server)
        return ["haproxy", "-db", "-f", str(write_private(self.workdir / "haproxy.cfg", text))]

    def wait_ready(self) -> None:
        for port in BOTH_PORTS:
            self.wait_tcp(ADDR.middlebox, port)


class ApacheTerminator(Daemon):
    """Apache httpd (mod_ssl, mod_proxy) on 8383/8443 with the LB CA's certificate,
    SSLVerifyClient require, the client certificate passed on in SSL_CLIENT_CERT."""

    name = "apache2"
    program = "apache2"

    def __init__(self, topo: Topology, workdir: Path, lab_pki: LabPKI) -> None:
        super().__init__(topo, "middlebox", workdir)
        self.pki = lab_pki

    def argv(self) -> list[str]:
        p, d = self.pki, self.workdir
        cert, key = backend_client_cert(p, "apache-backend", d)
        backend_pem = write_private(d / "backend-combined.pem",
                                    cert.read_bytes() + key.read_bytes())
        text = render("apache-terminator.conf", workdir=d, listen=ADDR.middlebox,
                      server=ADDR.server, cert=p.path("lb.pem"), key=p.path("lb-key.pem"),
                      client_ca=p.path("client-ca.pem"), server_root=p.path("server-root.pem"),
                      backend_pem=backend_pem)
        conf = write_private(d / "apache2.conf", text)
        return ["apache2", "-f", str(conf), "-DFOREGROUND"]

    def wait_ready(self) -> None:
        for port in BOTH_PORTS:
            self.wait_tcp(ADDR.middlebox, port)


class CaddyTerminator(Daemon):
    """Caddy reverse proxy on 8383/8443 with `tls internal` (its own local CA, made in its
    work dir) and client_auth require_and_verify against the lab client CA."""

    name = "caddy"
    program = "caddy"

    def __init__(self, topo: Topology, workdir: Path, lab_pki: LabPKI) -> None:
        super().__init__(topo, "middlebox", workdir)
        self.pki = lab_pki

    def argv(self) -> list[str]:
        p, d = self.pki, self.workdir
        cert, key = backend_client_cert(p, "caddy-backend", d)
        text = render("Caddyfile-terminator", workdir=d, listen=ADDR.middlebox,
                      server=ADDR.server, client_ca=p.path("client-ca.pem"),
                      server_root=p.path("server-root.pem"), backend_cert=cert, backend_key=key)
        conf = write_private(d / "Caddyfile", text)
        home = private_dir(d / "home")
        # caddy keeps config and data under $HOME/XDG dirs: keep them in the work dir
        return ["env", f"HOME={home}", f"XDG_CONFIG_HOME={home}", f"XDG_DATA_HOME={home}",
                "caddy", "run", "--config", str(conf), "--adapter", "caddyfile"]

    def wait_ready(self) -> None:
        for port in BOTH_PORTS:
            self.wait_tcp(ADDR.middlebox, port)


class Stunnel(Daemon):
    """stunnel on 8383/8443 with a self-signed certificate for server.lab, opening a new TLS
    connection (no client certificate) to the same port on the server."""

    name = "stunnel"
    program = "stunnel"

    def __init__(self, topo: Topology, workdir: Path) -> None:
        super().__init__(topo, "middlebox", workdir)

    def argv(self) -> list[str]:
        cert, key = write_issued(self_signed(SERVER_NAME), self.workdir, "stunnel")
        text = render("stunnel.conf", workdir=self.workdir, listen=ADDR.middlebox,
                      server=ADDR.server, cert=cert, key=key)
        return ["stunnel", str(write_private(self.workdir / "stunnel.conf", text))]

    def wait_ready(self) -> None:
        for port in BOTH_PORTS:
            self.wait_tcp(ADDR.middlebox, port)


# --- interceptors ------------------------------------------------------------------------------


class Sslsplit(Daemon):
    """sslsplit taking the connections the lab's nft redirect sends to :10443 (netfilter
    original destination), forging certificates with an inspection CA of its own."""

    name = "sslsplit"
    program = "sslsplit"
    port = 10443

    def __init__(self, topo: Topology, workdir: Path) -> None:
        super().__init__(topo, "middlebox", workdir)
        self.ca = inspection_ca()

    def argv(self) -> list[str]:
        cert, key = write_issued(pki.Issued(self.ca.cert, self.ca.key), self.workdir, "ca")
        return ["sslsplit", "-k", str(key), "-c", str(cert),
                "-l", str(self.workdir / "connect.log"),
                "ssl", ADDR.middlebox, str(self.port)]

    def wait_ready(self) -> None:
        # it prints nothing when ready (outside -D debug mode); a connection straight to the
        # port has no original destination ("not found in NAT state table") and is dropped
        self.wait_tcp(ADDR.middlebox, self.port)


class Squid(Daemon):
    """squid (squid-openssl) in the foreground (-N): explicit proxy on :3128 and intercepting
    port on :3129, both with ssl-bump. `rules` picks the ssl_bump rules:

    bump: peek at step 1, stare at step 2, bump (the forged certificate mimics the server's);
    splice: peek at step 1, splice all (TLS passes untouched);
    bump-8443: like bump for port 8443, splice for every other port.

    squid drops root for the `proxy` user, so its files live in a run dir owned by it
    (created at start, removed at stop), not in the test's work dir.
    """

    program = "squid"
    port = 3128
    intercept_port = 3129
    def __init__(self, topo: Topology, workdir: Path, lab_pki: LabPKI, rules: str = "bump"):
        super().__init__(topo, "middlebox", workdir)
        self.pki = lab_pki
        self.rules = SQUID_RULES[rules]
        self.name = f"squid-{rules}"
        self.ca = inspection_ca()
        self.rundir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{ADDR.middlebox}:{self.port}"

    def missing(self) -> str | None:
        if not SQUID_CERTGEN.exists():
            return f"{SQUID_CERTGEN} is missing: install squid-openssl (scripts/setup-test-env)"
        return super().missing()

    def argv(self) -> list[str]:
        proxy = pwd.getpwnam("proxy")
        run = self.rundir = Path(tempfile.mkdtemp(prefix="mtlslab-squid-"))  # 0700
        cert, key = write_issued(pki.Issued(self.ca.cert, self.ca.key), run, "ca")
        (run / "hosts").write_text(f"{ADDR.server} {SERVER_NAME}\n")
        server_root = run / "server-root.pem"
        server_root.write_bytes(self.pki.path("server-root.pem").read_bytes())
        text = render("squid.conf", listen=ADDR.middlebox, rundir=run, ca_cert=cert, ca_key=key,
                      server_root=server_root, ssl_bump_rules="\n".join(self.rules))
        conf = run / "squid.conf"
        conf.write_text(text)
        subprocess.run([str(SQUID_CERTGEN), "-c", "-s", str(run / "ssl_db"), "-M", "4MB"],
                       check=True, capture_output=True)
        for path in (run, *run.rglob("*")):
            shutil.chown(path, proxy.pw_uid, proxy.pw_gid)
        return ["squid", "-N", "-d", "2", "-f", str(conf)]

    def wait_ready(self) -> None:
        for port in (self.port, self.intercept_port):
            self.wait_for_output(rf"Accepting .* connections at .*:{port}\b")

    def stop(self) -> None:
        super().stop()
        if self.rundir is not None:
            shutil.rmtree(self.rundir, ignore_errors=True)
            self.rundir = None
