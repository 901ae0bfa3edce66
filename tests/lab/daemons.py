"""Real daemons inside the lab's namespaces, each with its own config, pid and log files.

Configs are templates from lab/ rendered into a private work dir ({{name}} placeholders;
nginx's own $variables are left alone). Every daemon runs in the foreground as a child of
the test (`ip netns exec NS prog ...` execs the program, so the Popen pid is the daemon),
is declared ready by a poll-connect from inside its namespace or by a log line, and is
stopped with terminate-then-kill. Never a system service.

Also here: the lab PKI (mtlsprobe.live.pki, written to files) and `probe_from`, which runs the
real CLI (`python3 -m mtlsprobe probe --format json`) inside a namespace.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlsprobe.live import pki
from mtlsprobe.model.certs import cert_info

from .netns import ADDR, LabError, Topology

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "lab"
READY_TIMEOUT = 30.0
MITMDUMP = os.environ.get("MTLSPROBE_MITMDUMP", "/opt/mitm/bin/mitmdump")
NGINX_STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
SERVER_NAME = "server.lab"


def render(template: str, **values: object) -> str:
    """Fill {{name}} placeholders of lab/<template>; a missing value is an error."""
    text = (TEMPLATES / template).read_text(encoding="utf-8")

    def fill(m: re.Match) -> str:
        if m.group(1) not in values:
            raise KeyError(f"{template}: no value for {{{{{m.group(1)}}}}}")
        return str(values[m.group(1)])

    return re.sub(r"\{\{(\w+)\}\}", fill, text)


def write_private(path: Path, data: bytes | str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    return path


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def missing_program(name: str) -> str | None:
    """Why `name` cannot run (None when it can)."""
    found = shutil.which(name) if os.sep not in name else (name if os.access(name, os.X_OK)
                                                           else None)
    if found is None:
        return f"{name} is not installed (scripts/setup-test-env installs it)"
    return None


# --- PKI -------------------------------------------------------------------------------------


@dataclass
class LabPKI:
    """The lab's certificates, in memory and as files in `dir` (keys 0600).

    server_root issues the real server's leaf (server.lab, 10.251.3.2) and, separately, the
    same-root terminator's leaf; client_ca issues the agent; lb_ca is a load balancer's own CA.
    """

    dir: Path
    server_root: pki.CA
    server: pki.Issued
    same_root_lb: pki.Issued
    client_ca: pki.CA
    agent: pki.Issued
    lb_ca: pki.CA
    lb: pki.Issued

    @classmethod
    def create(cls, directory: Path) -> LabPKI:
        directory = private_dir(directory)
        server_root = pki.CA("mtlsprobe Lab Server Root", org="mtlsprobe lab")
        client_ca = pki.CA("mtlsprobe Lab Client CA", org="mtlsprobe lab")
        lb_ca = pki.CA("Lab Load Balancer CA", org="lab ops")
        sans = (SERVER_NAME, ADDR.server, ADDR.middlebox)
        out = cls(
            dir=directory,
            server_root=server_root,
            server=server_root.issue(SERVER_NAME, sans=sans, eku=(pki.SERVER_AUTH,)),
            same_root_lb=server_root.issue(SERVER_NAME, sans=sans, eku=(pki.SERVER_AUTH,)),
            client_ca=client_ca,
            agent=client_ca.issue("lab-agent-01", eku=(pki.CLIENT_AUTH,)),
            lb_ca=lb_ca,
            lb=lb_ca.issue(SERVER_NAME, sans=sans, eku=(pki.SERVER_AUTH,)),
        )
        out._write()
        return out

    def _write(self) -> None:
        write_private(self.path("server-root.pem"), self.server_root.cert_pem)
        write_private(self.path("client-ca.pem"), self.client_ca.cert_pem)
        for name, issued in (("server", self.server), ("same-root-lb", self.same_root_lb),
                             ("agent", self.agent), ("lb", self.lb)):
            write_private(self.path(f"{name}.pem"), issued.chain_pem)
            write_private(self.path(f"{name}-key.pem"), issued.key_pem())
        # haproxy wants certificate and key in one file
        write_private(self.path("lb-combined.pem"), self.lb.chain_pem + self.lb.key_pem())

    def path(self, name: str) -> Path:
        return self.dir / name

    @property
    def server_pin(self) -> str:
        return cert_info(self.server.der).spki_pin

    @property
    def agent_sha1(self) -> str:
        """What nginx logs as $ssl_client_fingerprint for the agent's certificate."""
        return hashlib.sha1(self.agent.der).hexdigest()


# --- daemons ---------------------------------------------------------------------------------


class Daemon:
    """One program in one namespace. Subclasses give argv(), config and readiness."""

    name = "daemon"
    program = ""

    def __init__(self, topo: Topology, role: str, workdir: Path) -> None:
        self.topo = topo
        self.role = role
        self.workdir = private_dir(Path(workdir))
        self.process: subprocess.Popen | None = None
        self.out_path = self.workdir / f"{self.name}.out"
        self._out = None

    # to override
    def argv(self) -> list[str]:
        raise NotImplementedError

    def wait_ready(self) -> None:
        raise NotImplementedError

    def missing(self) -> str | None:
        """Why this daemon cannot run here (the test is skipped with it), None when it can."""
        return missing_program(self.program)

    def start(self) -> Daemon:
        if self.process is not None:
            return self
        argv = self.argv()
        self._out = open(self.out_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.topo.argv(self.role, argv),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate (then kill) the process and close its log. Idempotent."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait(5)
        if self._out is not None:
            self._out.close()
            self._out = None

    @property
    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def wait_tcp(self, host: str, port: int) -> None:
        self.topo.wait_tcp(self.role, host, port, timeout=READY_TIMEOUT, proc=self.process)

    def wait_for_output(self, pattern: str, timeout: float = READY_TIMEOUT) -> re.Match:
        """Wait for a line matching `pattern` in the daemon's output (blocking on the process
        between reads, so a dying daemon ends the wait at once)."""
        assert self.process is not None
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.output)
            if m:
                return m
            if self.process.poll() is not None:
                raise LabError(f"{self.name} exited ({self.process.returncode}) before "
                               f"printing {pattern!r}:\n{self.output[-2000:]}")
            if time.monotonic() > deadline:
                raise LabError(f"{self.name} did not print {pattern!r} in {timeout}s:\n"
                               f"{self.output[-2000:]}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.05)


class Nginx(Daemon):
    program = "nginx"
    template = ""
    ports: tuple[int, ...] = ()

    def values(self) -> dict[str, Any]:
        return {"workdir": self.workdir}

    def argv(self) -> list[str]:
        conf = write_private(self.workdir / "nginx.conf", render(self.template, **self.values()))
        return ["nginx", "-e", str(self.workdir / "error.log"), "-p", str(self.workdir),
                "-c", str(conf)]

    def wait_ready(self) -> None:
        for port in self.ports:
            self.wait_tcp(self.listen_host, port)

    @property
    def listen_host(self) -> str:
        raise NotImplementedError

    @property
    def access_log(self) -> list[str]:
        path = self.workdir / "access.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []


class NginxServer(Nginx):
    """The real mTLS server (server namespace) on 8383 and 8443 (and [fd00:251:3::2]:8383).

    verify: nginx's ssl_verify_client (on | optional | optional_no_ca | off).
    """

    name = "nginx-server"
    template = "nginx-server.conf"
    ports = (8383, 8443)

    def __init__(self, topo: Topology, workdir: Path, lab_pki: LabPKI, verify: str = "on"):
        super().__init__(topo, "server", workdir)
        if verify not in ("on", "optional", "optional_no_ca", "off"):
            raise ValueError(f"bad ssl_verify_client {verify!r}")
        self.pki = lab_pki
        self.verify = verify

    @property
    def listen_host(self) -> str:
        return ADDR.server

    def values(self) -> dict[str, Any]:
        return {
            "workdir": self.workdir, "host": ADDR.server, "host6": ADDR.server6,
            "cert": self.pki.path("server.pem"), "key": self.pki.path("server-key.pem"),
            "client_ca": self.pki.path("client-ca.pem"), "verify": self.verify,
        }

    def requests(self) -> list[dict[str, str]]:
        """The access log: one dict per HTTP request (remote, dn, verify, fingerprint, ...)."""
        return [json.loads(line) for line in self.access_log if line.strip()]

    def agent_cert_arrived(self) -> bool:
        """Did the agent's certificate reach this server and get verified?"""
        return any(
            r["fingerprint"] == self.pki.agent_sha1 and r["verify"] == "SUCCESS"
            for r in self.requests()
        )


class NginxStream(Nginx):
    """nginx `stream` + `ssl_preread`: SNI routing, TLS passed through (middlebox, :8383 and
    :8443, each to the same port on the server)."""

    name = "nginx-stream"
    template = "nginx-stream.conf"
    ports = (8383, 8443)

    def __init__(self, topo: Topology, workdir: Path) -> None:
        super().__init__(topo, "middlebox", workdir)

    @property
    def listen_host(self) -> str:
        return ADDR.middlebox

    def missing(self) -> str | None:
        if not NGINX_STREAM_MODULE.exists():
            return (f"{NGINX_STREAM_MODULE} is missing: install libnginx-mod-stream "
                    "(scripts/setup-test-env does)")
        return super().missing()

    def values(self) -> dict[str, Any]:
        return {"workdir": self.workdir, "stream_module": NGINX_STREAM_MODULE,
                "listen": ADDR.middlebox, "server": ADDR.server}


class NginxTerminator(Nginx):
    """nginx `http` reverse proxy terminating TLS with a certificate from the server's own
    root and re-encrypting to the server without a client certificate (middlebox, :8443)."""

    name = "nginx-terminator"
    template = "nginx-terminator.conf"
    ports = (8443,)

    def __init__(self, topo: Topology, workdir: Path, lab_pki: LabPKI) -> None:
        super().__init__(topo, "middlebox", workdir)
        self.pki = lab_pki

    @property
    def listen_host(self) -> str:
        return ADDR.middlebox

    def values(self) -> dict[str, Any]:
        return {"workdir": self.workdir, "listen": ADDR.middlebox, "server": ADDR.server,
                "cert": self.pki.path("same-root-lb.pem"),
                "key": self.pki.path("same-root-lb-key.pem")}


class Haproxy(Daemon):
    """haproxy in the foreground (-db). mode "tcp": L4 passthrough on :8383 and :8443; mode
    "http": TLS terminated with the LB CA's certificate on :8443, re-encrypted to the server."""

    program = "haproxy"

    def __init__(self, topo: Topology, workdir: Path, lab_pki: LabPKI, mode: str = "tcp"):
        super().__init__(topo, "middlebox", workdir)
        if mode not in ("tcp", "http"):
            raise ValueError(f"bad haproxy mode {mode!r}")
        self.mode = mode
        self.pki = lab_pki
        self.name = f"haproxy-{mode}"
        self.ports = (8383, 8443) if mode == "tcp" else (8443,)

    def argv(self) -> list[str]:
        text = render(f"haproxy-{self.mode}.cfg", listen=ADDR.middlebox, server=ADDR.server,
                      lb_pem=self.pki.path("lb-combined.pem"))
        conf = write_private(self.workdir / "haproxy.cfg", text)
        return ["haproxy", "-db", "-f", str(conf)]

    def wait_ready(self) -> None:
        for port in self.ports:
            self.wait_tcp(ADDR.middlebox, port)


class Tinyproxy(Daemon):
    """tinyproxy (-d, foreground) tunnelling CONNECT to 8383/8443 (middlebox, :8888)."""

    name = "tinyproxy"
    program = "tinyproxy"
    port = 8888

    def __init__(self, topo: Topology, workdir: Path) -> None:
        super().__init__(topo, "middlebox", workdir)

    @property
    def url(self) -> str:
        return f"http://{ADDR.middlebox}:{self.port}"

    def argv(self) -> list[str]:
        conf = write_private(self.workdir / "tinyproxy.conf",
                             render("tinyproxy.conf", listen=ADDR.middlebox, workdir=self.workdir))
        return ["tinyproxy", "-d", "-c", str(conf)]

    def wait_ready(self) -> None:
        self.wait_tcp(ADDR.middlebox, self.port)


class Mitmdump(Daemon):
    """mitmdump in the middlebox namespace, CA generated in its own confdir.

    mode "regular": explicit proxy on :8080; mode "transparent": takes connections that the
    lab's nft redirect sends to :8080 (see lab/nft-transparent.nft).
    """

    program = MITMDUMP
    port = 8080

    def __init__(self, topo: Topology, workdir: Path, mode: str = "regular") -> None:
        super().__init__(topo, "middlebox", workdir)
        if mode not in ("regular", "transparent"):
            raise ValueError(f"bad mitmproxy mode {mode!r}")
        self.mode = mode
        self.name = f"mitmdump-{mode}"
        self.confdir = private_dir(self.workdir / "conf")

    @property
    def url(self) -> str:
        return f"http://{ADDR.middlebox}:{self.port}"

    @property
    def ca_cert_path(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def argv(self) -> list[str]:
        return [MITMDUMP, "--mode", self.mode, "--listen-host", ADDR.middlebox,
                "--listen-port", str(self.port), "--set", f"confdir={self.confdir}",
                "--ssl-insecure", "--set", "termlog_verbosity=info"]

    def wait_ready(self) -> None:
        self.wait_for_output(r"[Pp]roxy listening at", timeout=60)


class OpenSSLServer(Daemon):
    """`openssl s_server -Verify 1 -www` (server namespace): a second mTLS implementation."""

    name = "s_server"
    program = "openssl"

    def __init__(self, topo: Topology, workdir: Path, lab_pki: LabPKI, port: int = 8383):
        super().__init__(topo, "server", workdir)
        self.pki = lab_pki
        self.port = port

    def argv(self) -> list[str]:
        stdbuf = shutil.which("stdbuf")
        return [*([stdbuf, "-oL", "-eL"] if stdbuf else []),
                "openssl", "s_server", "-accept", f"{ADDR.server}:{self.port}",
                "-cert", str(self.pki.path("server.pem")),
                "-key", str(self.pki.path("server-key.pem")),
                "-CAfile", str(self.pki.path("client-ca.pem")),
                # -Verify makes a certificate mandatory; without -verify_return_error s_server
                # still accepts one that fails verification (apps' verify_callback says ok)
                "-Verify", "1", "-verify_return_error", "-www"]

    def wait_ready(self) -> None:
        self.wait_for_output(r"^ACCEPT")


class Tcpdump(Daemon):
    """tcpdump writing every TCP packet on an interface of `role` to `path` (pcap)."""

    name = "tcpdump"
    program = "tcpdump"

    def __init__(self, topo: Topology, workdir: Path, role: str, ifname: str, path: Path):
        super().__init__(topo, role, workdir)
        self.ifname = ifname
        self.path = path

    def argv(self) -> list[str]:
        # --immediate-mode: packets reach the file as they come, so stopping loses none
        return ["tcpdump", "-i", self.ifname, "--immediate-mode", "-U", "-s", "0", "-n",
                "-w", str(self.path), "tcp"]

    def wait_ready(self) -> None:
        self.wait_for_output(r"listening on")


# --- the probe, run for real inside a namespace ----------------------------------------------


@dataclass
class ProbeRun:
    """One `mtlsprobe probe --format json` run: the parsed report and the exit code."""

    argv: list[str]
    returncode: int
    report: dict[str, Any]
    stderr: str

    @property
    def results(self) -> list[dict[str, Any]]:
        return self.report["results"]

    @property
    def result(self) -> dict[str, Any]:
        [only] = self.results
        return only

    @property
    def verdict(self) -> str:
        return self.result["verdict"]

    @property
    def rules(self) -> set[str]:
        return {f["rule"] for f in self.result["findings"]}

    @property
    def product(self) -> str | None:
        return self.result.get("product")

    def explain(self) -> str:
        r = self.result
        lines = [f"verdict={r['verdict']} product={r.get('product')} reason={r['reason']}"]
        lines += [f"  {f['rule']} {f['severity']}: {f['summary']}" for f in r["findings"]]
        for o in r["observations"]:
            http = o.get("http") or {}
            lines.append(f"  obs {o['label']}: {o['outcome']}/{o['stage']} "
                         f"certreq={o['cert_request']['seen']} http={http.get('status')}")
        return "\n".join(lines)


def probe_from(
    topo: Topology,
    role: str,
    target: str,
    *,
    lab_pki: LabPKI,
    ca: bool = True,
    pin: bool = True,
    agent: bool = True,
    baseline: Path | None = None,
    save_baseline: Path | None = None,
    proxy: str | None = None,
    http_path: str | None = "/",
    timeout: float = 8.0,
    repeat: int = 2,
    extra: tuple[str, ...] = (),
) -> ProbeRun:
    """Run the real CLI in `role`'s namespace and parse its JSON report."""
    argv = [sys.executable, "-m", "mtlsprobe", "probe", target, "--format", "json",
            "--no-env-proxy", "--sni", SERVER_NAME, "--timeout", str(timeout),
            "--repeat", str(repeat)]
    if ca:
        argv += ["--ca", str(lab_pki.path("server-root.pem"))]
    if pin:
        argv += ["--pin", lab_pki.server_pin]
    if agent:
        argv += ["--cert", str(lab_pki.path("agent.pem")),
                 "--key", str(lab_pki.path("agent-key.pem"))]
    if baseline:
        argv += ["--baseline", str(baseline)]
    if save_baseline:
        argv += ["--save-baseline", str(save_baseline)]
    if proxy:
        argv += ["--proxy", proxy, "--no-direct"]
    if http_path:
        argv += ["--http-path", http_path]
    argv += list(extra)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(topo.argv(role, argv), capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=timeout + 60)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise LabError(f"probe printed no JSON (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
                       f"\n{proc.stdout[-1000:]}") from None
    return ProbeRun(argv=argv, returncode=proc.returncode, report=report, stderr=proc.stderr)
