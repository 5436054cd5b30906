"""Decode certificates, chains, CSRs and OCSP responses (pure functions, ``cryptography`` only).

Undecodable input is a finding, not an error: callers get ``None`` or an
``error`` text, never an exception. The same certificate and staple arrive in
thousands of reports, so the decoders are memoised on their input text/bytes.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

UTC = dt.UTC
# Chromium's limit on a response's age (thisUpdate no older than this).
MAX_OCSP_AGE = dt.timedelta(days=7)

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)


def iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _must_staple(extensions: x509.Extensions) -> bool:
    try:
        feature = extensions.get_extension_for_class(x509.TLSFeature)
    except x509.ExtensionNotFound:
        return False
    return x509.TLSFeatureType.status_request in feature.value


def _name(name: x509.Name) -> str:
    return name.rfc4514_string()


# --- certificates ------------------------------------------------------------------


# eq=False: instances come from the memoised decoder, so identity is equality, and
# hashing one (as the memoised issuer check does per report) costs nothing.
@dataclass(frozen=True, eq=False)
class CertInfo:
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    sans: tuple[str, ...]
    fingerprint_sha256: str
    ocsp_urls: tuple[str, ...]
    must_staple: bool
    is_ca: bool
    cert: x509.Certificate = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": iso(self.not_before),
            "not_after": iso(self.not_after),
            "sans": list(self.sans),
            "fingerprint_sha256": self.fingerprint_sha256,
            "ocsp_urls": list(self.ocsp_urls),
            "must_staple": self.must_staple,
            "is_ca": self.is_ca,
        }


def cert_info(cert: x509.Certificate) -> CertInfo:
    exts = cert.extensions
    try:
        sans = tuple(
            str(v) for v in exts.get_extension_for_class(x509.SubjectAlternativeName).value
            .get_values_for_type(x509.DNSName)
        )
    except x509.ExtensionNotFound:
        sans = ()
    try:
        aia = exts.get_extension_for_class(x509.AuthorityInformationAccess).value
        ocsp_urls = tuple(
            d.access_location.value for d in aia
            if d.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(d.access_location, x509.UniformResourceIdentifier)
        )
    except x509.ExtensionNotFound:
        ocsp_urls = ()
    try:
        is_ca = exts.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return CertInfo(
        subject=_name(cert.subject),
        issuer=_name(cert.issuer),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sans=sans,
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        ocsp_urls=ocsp_urls,
        must_staple=_must_staple(exts),
        is_ca=is_ca,
        cert=cert,
    )


@lru_cache(maxsize=4096)
def decode_certificate_pem(text: str) -> CertInfo | str:
    """One PEM certificate as a report carries it: CertInfo, or the reason it did not decode."""
    try:
        return cert_info(x509.load_pem_x509_certificate(text.encode("ascii", "strict")))
    except (ValueError, UnicodeError, UnsupportedAlgorithm):
        # cryptography's messages point at its FAQ; say what matters to an owner.
        return "not a decodable certificate (the PEM body is not a valid DER certificate)"


@dataclass(frozen=True)
class Chain:
    certs: tuple[CertInfo | None, ...]
    errors: tuple[str, ...]

    @property
    def leaf(self) -> CertInfo | None:
        return self.certs[0] if self.certs else None

    def issuer_of(self, leaf: CertInfo) -> CertInfo | None:
        for candidate in self.certs[1:]:
            if candidate is not None and _issued_by(leaf, candidate):
                return candidate
        return None


@lru_cache(maxsize=4096)
def _issued_by(leaf: CertInfo, candidate: CertInfo) -> bool:
    # Memoised: a signature check per report would cost more than all the rest.
    if candidate.cert.subject != leaf.cert.issuer:
        return False
    try:
        leaf.cert.verify_directly_issued_by(candidate.cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def decode_chain(pems: tuple[str, ...] | list[str]) -> Chain:
    certs: list[CertInfo | None] = []
    errors: list[str] = []
    for index, text in enumerate(pems):
        result = decode_certificate_pem(text)
        if isinstance(result, str):
            certs.append(None)
            errors.append(f"certificate {index}: {result}")
        else:
            certs.append(result)
    return Chain(tuple(certs), tuple(errors))


# --- OCSP ----------------------------------------------------------------------


@dataclass(frozen=True)
class OcspInfo:
    """A decoded staple, judged against the served leaf and its issuer where known."""

    response_status: str
    error: str | None = None
    responses: int = 0
    cert_status: str | None = None
    serial: str | None = None
    matches_leaf: bool | None = None
    produced_at: dt.datetime | None = None
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None
    revocation_time: dt.datetime | None = None
    revocation_reason: str | None = None
    responder: str | None = None
    signature: str = "unverified"  # issuer | delegated | invalid | unverified

    @property
    def successful(self) -> bool:
        return self.response_status == "successful"

    def to_dict(self, now: dt.datetime | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "response_status": self.response_status,
            "error": self.error,
            "responses": self.responses,
            "cert_status": self.cert_status,
            "serial": self.serial,
            "matches_leaf": self.matches_leaf,
            "produced_at": iso(self.produced_at),
            "this_update": iso(self.this_update),
            "next_update": iso(self.next_update),
            "revocation_time": iso(self.revocation_time),
            "revocation_reason": self.revocation_reason,
            "responder": self.responder,
            "signature": self.signature,
        }
        if now is not None and self.this_update is not None:
            out["age_seconds"] = int((now - self.this_update).total_seconds())
            out["time_left_seconds"] = (
                int((self.next_update - now).total_seconds()) if self.next_update else None
            )
        return out


def ocsp_der_from_text(text: str | bytes) -> bytes | None:
    """DER bytes from base64 DER or PEM-armoured base64 (or raw DER bytes)."""
    if isinstance(text, bytes):
        if text[:1] == b"\x30":
            return text
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _PEM_BLOCK.search(text)
    body = "".join((match.group(2) if match else text).split())
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None


def _status_name(status: ocsp.OCSPResponseStatus) -> str:
    return status.name.lower()


def _verify(public_key: Any, signature: bytes, data: bytes, algorithm: Any) -> bool:
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            public_key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _responder_matches(resp: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if resp.responder_name is not None:
        return resp.responder_name == cert.subject
    key_hash = resp.responder_key_hash
    if key_hash is None:
        return False
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The key hash is SHA-1 over the subjectPublicKey BIT STRING's value (without
    # its unused-bits byte), which is the tail of the DER SubjectPublicKeyInfo.
    length = _bitstring_length(spki)
    return length is not None and hashlib.sha1(spki[-length:]).digest() == key_hash


def _bitstring_length(spki: bytes) -> int | None:
    """Length of the subjectPublicKey bits at the end of a DER SubjectPublicKeyInfo."""

    def read_len(buf: bytes, pos: int) -> tuple[int, int]:
        first = buf[pos]
        if first < 0x80:
            return first, pos + 1
        n = first & 0x7F
        return int.from_bytes(buf[pos + 1 : pos + 1 + n], "big"), pos + 1 + n

    try:
        _, pos = read_len(spki, 1)  # outer SEQUENCE
        alg_len, alg_start = read_len(spki, pos + 1)  # AlgorithmIdentifier
        pos = alg_start + alg_len
        if spki[pos] != 0x03:  # BIT STRING
            return None
        bit_len, _ = read_len(spki, pos + 1)
        return bit_len - 1
    except IndexError:
        return None


def _judge_signature(resp: ocsp.OCSPResponse, issuer: x509.Certificate | None) -> str:
    if issuer is None:
        return "unverified"
    algorithm = resp.signature_hash_algorithm
    if _responder_matches(resp, issuer) and _verify(
        issuer.public_key(), resp.signature, resp.tbs_response_bytes, algorithm
    ):
        return "issuer"
    for delegate in resp.certificates:
        try:
            delegate.verify_directly_issued_by(issuer)
            eku = delegate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm, x509.ExtensionNotFound):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            continue
        if _verify(delegate.public_key(), resp.signature, resp.tbs_response_bytes, algorithm):
            return "delegated"
    return "invalid"


def _ids_for(leaf: x509.Certificate, issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    # An OCSP request for the pair computes exactly the hashes a matching response carries.
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, algorithm).build()
    return request.issuer_name_hash, request.issuer_key_hash


@lru_cache(maxsize=4096)
def decode_ocsp(der: bytes, leaf_pem: str | None = None, issuer_pem: str | None = None) -> OcspInfo:
    """Decode a staple and match it to the leaf (serial and issuer hashes) and issuer (signature)."""
    try:
        resp = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        return OcspInfo(response_status="unparsable", error=str(exc).splitlines()[0][:160] or "not OCSP")
    status = _status_name(resp.response_status)
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return OcspInfo(response_status=status)
    leaf = decode_certificate_pem(leaf_pem) if leaf_pem else None
    issuer = decode_certificate_pem(issuer_pem) if issuer_pem else None
    leaf_cert = leaf.cert if isinstance(leaf, CertInfo) else None
    issuer_cert = issuer.cert if isinstance(issuer, CertInfo) else None
    try:
        singles = list(resp.responses)
        responder = (
            _name(resp.responder_name) if resp.responder_name is not None
            else "key:" + (resp.responder_key_hash or b"").hex()
        )
        produced_at = resp.produced_at_utc
    except ValueError as exc:
        return OcspInfo(response_status="unparsable", error=f"response data: {exc}")
    if not singles:
        return OcspInfo(response_status=status, error="no SingleResponse", responder=responder,
                        produced_at=produced_at)
    chosen, matches = singles[0], None
    if leaf_cert is not None:
        matches = False
        for single in singles:
            if single.serial_number != leaf_cert.serial_number:
                continue
            if issuer_cert is not None:
                name_hash, key_hash = _ids_for(leaf_cert, issuer_cert, single.hash_algorithm)
                if (single.issuer_name_hash, single.issuer_key_hash) != (name_hash, key_hash):
                    continue
            chosen, matches = single, True
            break
    reason = chosen.revocation_reason
    return OcspInfo(
        response_status=status,
        responses=len(singles),
        cert_status=chosen.certificate_status.name.lower(),
        serial=format(chosen.serial_number, "x"),
        matches_leaf=matches,
        produced_at=produced_at,
        this_update=chosen.this_update_utc,
        next_update=chosen.next_update_utc,
        revocation_time=chosen.revocation_time_utc,
        revocation_reason=reason.name if reason is not None else None,
        responder=responder,
        signature=_judge_signature(resp, issuer_cert),
    )


# --- files (for `inspect`) ---------------------------------------------------------


@dataclass(frozen=True)
class CsrInfo:
    subject: str
    sans: tuple[str, ...]
    must_staple: bool
    signature_valid: bool

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "sans": list(self.sans), "must_staple": self.must_staple,
                "signature_valid": self.signature_valid}


def csr_info(csr: x509.CertificateSigningRequest) -> CsrInfo:
    try:
        sans = tuple(
            str(v) for v in csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            .value.get_values_for_type(x509.DNSName)
        )
    except x509.ExtensionNotFound:
        sans = ()
    return CsrInfo(_name(csr.subject), sans, _must_staple(csr.extensions), csr.is_signature_valid)
