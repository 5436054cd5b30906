"""``staple-collector inspect FILE``: what ``openssl x509/req/ocsp -text`` would tell, for stapling."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from cryptography import x509

from collector import decode

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
_CERT_LABELS = (b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE")
_CSR_LABELS = (b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST")


class InspectError(ValueError):
    pass


def inspect_bytes(data: bytes, now: dt.datetime | None = None) -> dict[str, Any]:
    """Identify and decode a certificate, chain, CSR or OCSP response (PEM, DER or base64)."""
    now = now or dt.datetime.now(dt.UTC)
    blocks = _PEM_BLOCK.findall(data)
    if blocks:
        labels = {label for label, _ in blocks}
        if labels <= set(_CERT_LABELS):
            certs = [x509.load_pem_x509_certificate(_reblock(label, body)) for label, body in blocks]
            return _certificates(certs, now)
        if len(blocks) == 1 and blocks[0][0] in _CSR_LABELS:
            return _csr(x509.load_pem_x509_csr(_reblock(*blocks[0])))
        if len(blocks) == 1 and b"OCSP" in blocks[0][0]:
            der = decode.ocsp_der_from_text(data.decode("ascii", "replace"))
            if der is None:
                raise InspectError("the OCSP block is not base64")
            return _ocsp(der, now)
        raise InspectError(f"unsupported PEM blocks: {', '.join(sorted(b.decode() for b in labels))}")
    for attempt in (_try_der_certificate, _try_der_csr):
        result = attempt(data, now)
        if result is not None:
            return result
    der = data if data[:1] == b"\x30" else decode.ocsp_der_from_text(data.strip())
    if der is not None:
        info = decode.decode_ocsp(der)
        if info.response_status != "unparsable":
            return _ocsp(der, now)
    raise InspectError("not a certificate, chain, CSR or OCSP response (PEM, DER or base64)")


def _reblock(label: bytes, body: bytes) -> bytes:
    return b"-----BEGIN " + label + b"-----\n" + body + b"\n-----END " + label + b"-----\n"


def _try_der_certificate(data: bytes, now: dt.datetime) -> dict[str, Any] | None:
    try:
        return _certificates([x509.load_der_x509_certificate(data)], now)
    except ValueError:
        return None


def _try_der_csr(data: bytes, now: dt.datetime) -> dict[str, Any] | None:
    try:
        return _csr(x509.load_der_x509_csr(data))
    except ValueError:
        return None


def _certificates(certs: list[x509.Certificate], now: dt.datetime) -> dict[str, Any]:
    infos = [decode.cert_info(c) for c in certs]
    leaf = infos[0]
    out: dict[str, Any] = {
        "kind": "certificate" if len(infos) == 1 else "chain",
        "must_staple": leaf.must_staple,
        "ocsp_urls": list(leaf.ocsp_urls),
        "expired": leaf.not_after < now,
        "certificates": [i.to_dict() for i in infos],
    }
    return out


def _csr(csr: x509.CertificateSigningRequest) -> dict[str, Any]:
    return {"kind": "csr", **decode.csr_info(csr).to_dict()}


def _ocsp(der: bytes, now: dt.datetime) -> dict[str, Any]:
    info = decode.decode_ocsp(der)
    out = {"kind": "ocsp-response", **info.to_dict(now)}
    if info.successful and info.next_update is not None:
        out["fresh"] = info.this_update <= now < info.next_update if info.this_update else False
    return out


def _when(seconds: int) -> str:
    span = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if span >= size:
            text = f"{span // size}{unit}"
            break
    else:
        text = f"{span}s"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def render(result: dict[str, Any]) -> str:
    """The human form of ``inspect_bytes``'s result."""
    kind = result["kind"]
    lines: list[str] = []
    if kind in ("certificate", "chain"):
        for index, cert in enumerate(result["certificates"]):
            role = "leaf" if index == 0 else f"#{index}"
            lines.append(f"{role}: {cert['subject']}")
            lines.append(f"  issuer        {cert['issuer']}")
            lines.append(f"  serial        {cert['serial']}")
            lines.append(f"  valid         {cert['not_before']} to {cert['not_after']}")
            if cert["sans"]:
                lines.append(f"  names         {', '.join(cert['sans'])}")
            lines.append(f"  sha256        {cert['fingerprint_sha256']}")
            lines.append(f"  OCSP URL      {', '.join(cert['ocsp_urls']) or 'none'}")
            lines.append(f"  Must-Staple   {'yes' if cert['must_staple'] else 'no'}")
        if result["must_staple"]:
            lines.append("The certificate requests OCSP Must-Staple: strict clients need a valid staple.")
        else:
            lines.append("The certificate does not request OCSP Must-Staple.")
        if not result["ocsp_urls"]:
            lines.append("It has no OCSP responder URL, so it cannot be stapled at all.")
            if result["must_staple"]:
                lines.append("Must-Staple without an OCSP URL: strict clients will reject it every time.")
        if result["expired"]:
            lines.append("It has expired.")
    elif kind == "csr":
        lines.append(f"CSR: {result['subject']}")
        if result["sans"]:
            lines.append(f"  names         {', '.join(result['sans'])}")
        lines.append(f"  signature     {'valid' if result['signature_valid'] else 'INVALID'}")
        lines.append(
            "The CSR requests OCSP Must-Staple (TLS Feature status_request)."
            if result["must_staple"] else "The CSR does not request OCSP Must-Staple."
        )
    else:
        lines.append(f"OCSP response: {result['response_status']}")
        if result["response_status"] == "successful":
            lines.append(f"  cert status   {result['cert_status']}")
            lines.append(f"  serial        {result['serial']}")
            lines.append(f"  responder     {result['responder']}")
            lines.append(f"  produced at   {result['produced_at']}")
            lines.append(f"  this update   {result['this_update']} ({_when(-result['age_seconds'])})")
            if result.get("next_update"):
                lines.append(f"  next update   {result['next_update']} ({_when(result['time_left_seconds'])})")
            if result.get("revocation_time"):
                lines.append(f"  revoked       {result['revocation_time']} ({result['revocation_reason']})")
            fresh = result.get("fresh")
            lines.append("It is fresh." if fresh else "It is NOT fresh (expired or not yet valid).")
        elif result.get("error"):
            lines.append(f"  error         {result['error']}")
    return "\n".join(lines)
