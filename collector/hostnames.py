"""Hostname normalisation and the site's host patterns (pure functions)."""

from __future__ import annotations

import functools
import ipaddress
import re

import idna

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class HostnameError(ValueError):
    pass


def normalise(raw: str) -> str:
    """Return the IDNA A-label, lower-case form of a DNS hostname.

    Refuses IP literals, empty labels, over-long names and anything that is
    not a DNS name. A single trailing dot is dropped. Memoised (bounded):
    reports for one host repeat its name; invalid names raise every time.
    """
    if not isinstance(raw, str):
        raise HostnameError("must be a string")
    return _normalise(raw)


@functools.lru_cache(maxsize=4096)
def _normalise(raw: str) -> str:
    name = raw.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise HostnameError("must not be empty")
    if len(name) > 253 * 4:  # generous bound before the IDNA codec works on it
        raise HostnameError("is too long")
    if name.startswith("[") or _is_ip(name):
        raise HostnameError("must be a DNS name, not an IP address")
    if name.isascii():
        ascii_name = name.lower()
    else:
        try:
            ascii_name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise HostnameError(f"is not a valid internationalised name ({exc})") from None
    if len(ascii_name) > 253:
        raise HostnameError("is longer than 253 characters")
    labels = ascii_name.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise HostnameError(f"has an invalid label {label[:63]!r}")
    if labels[-1].isdigit():
        raise HostnameError("must be a DNS name, not an IP address")
    if ascii_name.startswith("xn--") or ".xn--" in ascii_name:
        try:
            idna.decode(ascii_name)
        except (idna.IDNAError, UnicodeError, ValueError):
            raise HostnameError("has an invalid punycode label") from None
    return ascii_name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def normalise_pattern(raw: str) -> str:
    """``example.com`` or ``*.example.com`` (any subdomain, not the apex)."""
    raw = raw.strip()
    if raw.startswith("*."):
        return "*." + normalise(raw[2:])
    if "*" in raw:
        raise HostnameError("a wildcard is allowed only as the whole first label (*.example.com)")
    return normalise(raw)


def matches(host: str, patterns: list[str] | tuple[str, ...]) -> bool:
    """True when ``host`` (normalised) is allowed by ``patterns``; no patterns allow all."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False
