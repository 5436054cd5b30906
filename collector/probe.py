"""An active staple check: connect as a strict client, ask for the staple, judge it as Chrome did.

Python's ``ssl`` module can neither request a stapled OCSP response nor show
one, so the handshake is made with pyOpenSSL (``status_request`` via
``Connection.request_ocsp`` and a client OCSP callback that keeps the bytes).

The probe judges stapling, not trust: the chain is verified against the system
roots (plus ``ca_file``) and the outcome is reported, but an untrusted chain
does not stop the check. The judgement follows Chrome's ``CheckOCSP``
(``OCSPVerifyResult``): ``MISSING``, ``PARSE_RESPONSE_ERROR``,
``ERROR_RESPONSE``, ``PARSE_RESPONSE_DATA_ERROR``, ``BAD_PRODUCED_AT``,
``NO_MATCHING_RESPONSE``, ``INVALID_DATE``, else ``PROVIDED`` with the
certificate status; a signature that verifies against neither the issuer nor a
delegated responder is ``PROVIDED`` with ``UNKNOWN``, as Chrome treated it.
"""

from __future__ import annotations

import base64
import datetime as dt
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from collector import decode, diagnosis, hostnames

DEFAULT_TIMEOUT = 10.0
VALID = "valid"  # the probe's own verdict code for a good staple


class ProbeError(Exception):
    """The host could not be reached or the handshake failed (exit status 2)."""


@dataclass
class Target:
    host: str
    port: int = 443
    servername: str | None = None

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


def parse_target(text: str) -> Target:
    """``host``, ``host:port`` or ``[v6]:port``."""
    text = text.strip()
    port = 443
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:])
    elif text.count(":") == 1:
        host, _, raw = text.partition(":")
        port = _port(raw)
    else:
        host = text
    if not host:
        raise ValueError("no host")
    return Target(host.lower(), port)


def _port(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ValueError(f"not a port: {raw!r}")
    return int(raw)


@dataclass
class Result:
    target: Target
    servername: str
    address: str
    tls_version: str
    cipher: str | None
    chain: list[str]
    ocsp_der: bytes | None
    verify_errors: list[str]
    response_status: str
    cert_status: str | None
    analysis: diagnosis.Analysis | None
    at: dt.datetime
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.response_status == "PROVIDED" and self.cert_status == "GOOD"

    @property
    def must_staple(self) -> bool | None:
        leaf = decode.decode_chain(tuple(self.chain)).leaf
        return leaf.must_staple if leaf else None

    def verdict(self) -> dict[str, str]:
        if self.ok:
            info = decode.decode_ocsp(self.ocsp_der or b"", *self._pair())
            left = ""
            if info.next_update:
                in_ = diagnosis._human(info.next_update - self.at)
                left = f"; next update {decode.iso(info.next_update)} (in {in_})"
            return {"code": VALID, "severity": "ok",
                    "summary": f"The server staples a valid OCSP response (good){left}.", "advice": ""}
        assert self.analysis is not None
        return self.analysis.diagnosis.to_dict()

    def _pair(self) -> tuple[str | None, str | None]:
        chain = decode.decode_chain(tuple(self.chain))
        leaf = chain.leaf
        issuer = chain.issuer_of(leaf) if leaf else None
        issuer_pem = next((t for t, c in zip(self.chain, chain.certs, strict=True) if c is issuer), None)
        return (self.chain[0] if leaf else None), issuer_pem

    def report(self) -> dict[str, Any]:
        """The result as an Expect-Staple report in Chrome's flat shape."""
        out: dict[str, Any] = {
            "date-time": self.at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.at.microsecond // 1000:03d}Z",
            "hostname": self.servername,
            "port": self.target.port,
            "response-status": self.response_status,
            "served-certificate-chain": self.chain,
            "validated-certificate-chain": [] if self.verify_errors else self.chain,
        }
        if self.cert_status:
            out["cert-status"] = self.cert_status
        if self.ocsp_der is not None:
            out["ocsp-response"] = base64.b64encode(self.ocsp_der).decode()
        return out

    def to_dict(self) -> dict[str, Any]:
        chain = decode.decode_chain(tuple(self.chain))
        info = decode.decode_ocsp(self.ocsp_der, *self._pair()) if self.ocsp_der is not None else None
        return {
            "host": self.target.host,
            "port": self.target.port,
            "servername": self.servername,
            "address": self.address,
            "at": decode.iso(self.at),
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "ok": self.ok,
            "response_status": self.response_status,
            "cert_status": self.cert_status,
            "must_staple": self.must_staple,
            "diagnosis": self.verdict(),
            "trusted": not self.verify_errors,
            "verify_errors": self.verify_errors,
            "findings": self.findings,
            "certificate": chain.leaf.to_dict() if chain.leaf else None,
            "chain_length": len(self.chain),
            "ocsp": info.to_dict(self.at) if info else None,
        }


def judge(info: decode.OcspInfo | None, leaf: decode.CertInfo | None, at: dt.datetime) -> tuple[str, str | None]:
    """(response-status, cert-status) as Chrome's CheckOCSP would have reported them."""
    if info is None:
        return "MISSING", None
    if info.response_status == "unparsable":
        return "PARSE_RESPONSE_ERROR", None
    if not info.successful:
        return "ERROR_RESPONSE", None
    if info.signature == "invalid":
        return "PROVIDED", "UNKNOWN"
    if leaf and info.produced_at and not leaf.not_before <= info.produced_at <= leaf.not_after:
        return "BAD_PRODUCED_AT", None
    if info.matches_leaf is False:
        return "NO_MATCHING_RESPONSE", None
    if (
        (info.this_update and info.this_update > at)
        or (info.next_update and info.next_update <= at)
        or (info.this_update and info.this_update < at - decode.MAX_OCSP_AGE)
    ):
        return "INVALID_DATE", None
    return "PROVIDED", (info.cert_status or "unknown").upper()


def _connect(target: Target, timeout: float) -> socket.socket:
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {target.host}: {exc.strerror}") from None
    last = "no address"
    for family, kind, proto, _, address in infos[:4]:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
    raise ProbeError(f"cannot connect to {target.label}: {last}")


def probe(target: Target, *, ca_file: str | None = None, timeout: float = DEFAULT_TIMEOUT,
          min_version: int | None = None, max_version: int | None = None) -> Result:
    """Handshake with ``target`` asking for a staple; judge what came back."""
    servername = target.servername or target.host
    try:
        sni = hostnames.normalise(servername)
    except hostnames.HostnameError:
        sni = None  # an IP address: no SNI
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if min_version:
        context.set_min_proto_version(min_version)
    if max_version:
        context.set_max_proto_version(max_version)
    context.set_default_verify_paths()
    if ca_file:
        try:
            context.load_verify_locations(ca_file)
        except SSL.Error as exc:
            raise ProbeError(f"cannot load --ca-file {ca_file}: {exc}") from None
    errors: list[str] = []

    def on_verify(_conn: Any, cert: Any, errnum: int, depth: int, ok: int) -> bool:
        if not ok:
            message = _verify_message(errnum)
            subject = cert.to_cryptography().subject.rfc4514_string()
            entry = f"depth {depth} ({subject}): {message}"
            if entry not in errors:
                errors.append(entry)
        return True  # judge stapling, not trust: go on

    context.set_verify(SSL.VERIFY_PEER, on_verify)
    stapled: list[bytes] = []

    def on_ocsp(_conn: Any, data: bytes, _data: Any) -> bool:
        stapled.append(bytes(data))
        return True

    context.set_ocsp_client_callback(on_ocsp)
    sock = _connect(target, timeout)
    address = sock.getpeername()[0]
    conn = SSL.Connection(context, sock)
    if sni:
        conn.set_tlsext_host_name(sni.encode("ascii"))
    conn.request_ocsp()
    conn.set_connect_state()
    sock.setblocking(False)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                conn.do_handshake()
                break
            except (SSL.WantReadError, SSL.WantWriteError) as want:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProbeError(f"TLS handshake with {target.label} timed out") from None
                readable = [sock] if isinstance(want, SSL.WantReadError) else []
                writable = [sock] if isinstance(want, SSL.WantWriteError) else []
                select.select(readable, writable, [], left)
            except SSL.Error as exc:
                raise ProbeError(f"TLS handshake with {target.label} failed: {_ssl_reason(exc)}") from None
            except OSError as exc:
                raise ProbeError(f"TLS handshake with {target.label} failed: {exc.strerror or exc}") from None
        chain_certs = conn.get_peer_cert_chain(as_cryptography=True) or []
        chain = [c.public_bytes(serialization.Encoding.PEM).decode() for c in chain_certs]
        version = conn.get_protocol_version_name()
        cipher = conn.get_cipher_name()
    finally:
        try:
            conn.shutdown()
        except SSL.Error:
            pass
        except OSError:
            pass
        sock.close()

    at = dt.datetime.now(dt.UTC)
    ocsp_der = stapled[0] if stapled and stapled[0] else None
    decoded = decode.decode_chain(tuple(chain))
    result = Result(target, servername, address, version, cipher, chain, ocsp_der, errors,
                    "MISSING", None, None, at)
    leaf_pem, issuer_pem = result._pair()
    info = decode.decode_ocsp(ocsp_der, leaf_pem, issuer_pem) if ocsp_der is not None else None
    result.response_status, result.cert_status = judge(info, decoded.leaf, at)
    if not result.ok:
        result.analysis = diagnosis.analyse(
            response_status=result.response_status, cert_status=result.cert_status, ocsp_der=ocsp_der,
            served_chain=chain, at=at,
        )
        result.findings = list(result.analysis.findings)
    else:
        result.findings = list(decoded.errors)
    return result


def _ssl_reason(exc: SSL.Error) -> str:
    try:
        return "; ".join(str(part[2]) for part in exc.args[0]) or str(exc)
    except (IndexError, TypeError):
        return str(exc) or type(exc).__name__


_VERIFY_MESSAGES = {
    2: "unable to get issuer certificate",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    9: "certificate is not yet valid",
}


def _verify_message(errnum: int) -> str:
    return _VERIFY_MESSAGES.get(errnum, f"verification error {errnum}")


def render(data: dict[str, Any]) -> str:
    """Human output of ``Result.to_dict()``."""
    verdict = data["diagnosis"]
    lines = [
        f"{data['host']}:{data['port']} ({data['address']}, SNI {data['servername']}, "
        f"{data['tls_version']}, {data['cipher']})",
        f"  staple        {data['response_status']}" + (f" / {data['cert_status']}" if data["cert_status"] else ""),
        f"  verdict       {verdict['code']} ({verdict['severity']})",
        f"  {verdict['summary']}",
    ]
    if verdict.get("advice"):
        lines.append(f"  advice: {verdict['advice']}")
    cert = data["certificate"]
    if cert:
        lines.append(f"  certificate   {cert['subject']}, serial {cert['serial']}, "
                     f"expires {cert['not_after']}, Must-Staple {'yes' if cert['must_staple'] else 'no'}")
        lines.append(f"  OCSP URL      {', '.join(cert['ocsp_urls']) or 'none'}")
    ocsp = data["ocsp"]
    if ocsp:
        lines.append(f"  OCSP          {ocsp['response_status']}, cert {ocsp['cert_status']}, "
                     f"this update {ocsp['this_update']}, next update {ocsp['next_update']}, "
                     f"signature {ocsp['signature']}")
    trust = "trusted" if data["trusted"] else "NOT trusted: " + "; ".join(data["verify_errors"])
    lines.append(f"  chain         {trust}")
    for finding in data["findings"]:
        lines.append(f"  - {finding}")
    return "\n".join(lines)
