"""Outbound HTTP for webhooks, refusing internal destinations.

A webhook URL is chosen by a site owner, so it must not let them make the
collector reach what only the collector can reach: loopback, private networks,
link-local addresses and cloud metadata endpoints. The check is made on the
address we actually connect to: the name is resolved once, every address is
checked, and the connection goes to a checked address (the Host header and TLS
server name stay the hostname), so DNS rebinding between check and connect
gets nowhere. Redirects are followed (at most ``MAX_REDIRECTS``) and every hop
is checked the same way. Proxy environment variables are ignored.

``allow_private`` (the ``WEBHOOK_ALLOW_PRIVATE`` setting) opens loopback and
private ranges; link-local (which holds 169.254.169.254) and the metadata
addresses stay refused either way.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 3
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "staple-collector-webhook/1"

METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("169.254.170.2"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("fd00:ec2::254"),
}


class Refused(Exception):
    """The destination is not allowed (or not a usable URL)."""


@dataclass
class Result:
    status: int | None
    latency_ms: int
    error: str | None = None
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def address_allowed(address: str, allow_private: bool) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip in METADATA or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return False
    if ip.is_global:
        return True
    return allow_private and (ip.is_private or ip.is_loopback or ip in _CGNAT)


_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, or Refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Refused("only http and https URLs are allowed")
    if not parts.hostname:
        raise Refused("the URL has no host")
    if parts.username or parts.password:
        raise Refused("credentials in the URL are not allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("the URL has an invalid port") from None
    return parts.scheme, parts.hostname, port


def resolve(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses of ``host`` we may connect to; Refused when there are none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Refused(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    allowed = [a for a in addresses if address_allowed(a, allow_private)]
    if not allowed:
        raise Refused(
            f"{host} resolves to an internal address ({', '.join(addresses)}); "
            "set WEBHOOK_ALLOW_PRIVATE=true to allow loopback and private networks"
        )
    return allowed


class _Pinned(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    allow_private: bool,
    context: ssl.SSLContext | None = None,
) -> Result:
    """POST ``body``; never raises for network trouble (the Result says what happened)."""
    started = time.monotonic()

    def done(status: int | None, error: str | None = None, data: bytes = b"") -> Result:
        return Result(status, int((time.monotonic() - started) * 1000), error, data)

    method = "POST"
    for _ in range(MAX_REDIRECTS + 1):
        try:
            scheme, host, port = check_url(url)
            addresses = resolve(host, port, allow_private)
        except Refused as exc:
            return done(None, f"refused: {exc}")
        last_error = "no address"
        for address in addresses[:2]:
            if scheme == "https":
                conn: http.client.HTTPConnection = _PinnedTLS(
                    host, port, address, timeout, context or ssl.create_default_context()
                )
            else:
                conn = _Pinned(host, port, address, timeout)
            try:
                parts = urlsplit(url)
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                send_headers = {"User-Agent": USER_AGENT, **headers}
                conn.request(method, path, body=body if method == "POST" else None, headers=send_headers)
                response = conn.getresponse()
                data = response.read(MAX_RESPONSE_BYTES)
                status = response.status
                location = response.getheader("Location")
            except (OSError, http.client.HTTPException) as exc:
                last_error = _describe(exc)
                continue
            finally:
                conn.close()
            if status in (301, 302, 303, 307, 308) and location:
                if status == 303:
                    method = "GET"
                url = urljoin(url, location)
                break
            return done(status, None, data)
        else:
            return done(None, last_error)
    return done(None, f"more than {MAX_REDIRECTS} redirects")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.HTTPException):
        return f"bad HTTP response: {type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"
