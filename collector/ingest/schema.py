"""The Expect-Staple report at the boundary: a marshmallow schema and the typed result.

The schema mirrors the raw report (kebab-case keys through ``data_key``) and is
the only place raw report fields are looked at; after ``load_report`` the code
works with a ``Report``.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

from collector import decode, hostnames

RESPONSE_STATUSES = (
    "MISSING",
    "PROVIDED",
    "ERROR_RESPONSE",
    "BAD_PRODUCED_AT",
    "NO_MATCHING_RESPONSE",
    "INVALID_DATE",
    "PARSE_RESPONSE_ERROR",
    "PARSE_RESPONSE_DATA_ERROR",
)
CERT_STATUSES = ("GOOD", "REVOKED", "UNKNOWN")

MAX_CHAIN_LENGTH = 10
MAX_CERT_CHARS = 16 * 1024
MAX_OCSP_CHARS = 32 * 1024

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 date-time, with or without fraction, as an aware UTC datetime."""
    match = _RFC3339.match(text)
    if not match:
        raise ValueError("not an RFC 3339 date-time")
    day, clock, fraction, offset = match.groups()
    fraction = (fraction or "")[:7]  # datetime keeps microseconds: '.' + 6 digits
    offset = "+00:00" if offset in ("Z", "z") else offset
    value = datetime.fromisoformat(f"{day}T{clock}{fraction}{offset}")
    return value.astimezone(UTC)


def decode_ocsp_text(text: str) -> bytes:
    """Base64 DER, or PEM-armoured base64 (the draft's wording), to DER bytes."""
    der = decode.ocsp_der_from_text(text)
    if not der:
        raise ValueError("not base64")
    return der


class _Hostname(fields.String):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return hostnames.normalise(text)
        except hostnames.HostnameError as exc:
            raise ValidationError(f"Not a valid hostname: {exc}.") from None


class _DateTime(fields.String):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parse_rfc3339(text)
        except ValueError:
            raise ValidationError("Not an RFC 3339 date-time.") from None


class _OcspResponse(fields.String):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bytes:
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > MAX_OCSP_CHARS:
            raise ValidationError(f"Longer than {MAX_OCSP_CHARS} characters.")
        try:
            return decode_ocsp_text(text)
        except ValueError:
            raise ValidationError("Not base64 or PEM-armoured base64.") from None


def _chain(data_key: str) -> fields.List:
    return fields.List(
        fields.String(validate=validate.Length(max=MAX_CERT_CHARS)),
        validate=validate.Length(max=MAX_CHAIN_LENGTH),
        load_default=list,
        data_key=data_key,
    )


class ReportSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    date_time = _DateTime(data_key="date-time", load_default=None)
    hostname = _Hostname(required=True)
    port = fields.Integer(strict=True, validate=validate.Range(1, 65535), load_default=443)
    effective_expiration_date = _DateTime(data_key="effective-expiration-date", load_default=None)
    response_status = fields.String(
        data_key="response-status", required=True, validate=validate.OneOf(RESPONSE_STATUSES)
    )
    cert_status = fields.String(
        data_key="cert-status", load_default=None, allow_none=True,
        validate=validate.OneOf(CERT_STATUSES),
    )
    ocsp_response = _OcspResponse(data_key="ocsp-response", load_default=None, allow_none=True)
    served_certificate_chain = _chain("served-certificate-chain")
    validated_certificate_chain = _chain("validated-certificate-chain")

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> Report:
        return Report(**data)


@dataclass(frozen=True, slots=True)
class Report:
    hostname: str
    response_status: str
    port: int = 443
    date_time: datetime | None = None
    effective_expiration_date: datetime | None = None
    cert_status: str | None = None
    ocsp_response: bytes | None = None
    served_certificate_chain: list[str] = field(default_factory=list)
    validated_certificate_chain: list[str] = field(default_factory=list)

    def to_sample(self) -> dict[str, Any]:
        """The stored form: the report's own field names, dates in RFC 3339."""
        return {
            "date-time": _iso(self.date_time),
            "hostname": self.hostname,
            "port": self.port,
            "effective-expiration-date": _iso(self.effective_expiration_date),
            "response-status": self.response_status,
            "cert-status": self.cert_status,
            "ocsp-response": (
                base64.b64encode(self.ocsp_response).decode("ascii")
                if self.ocsp_response is not None
                else None
            ),
            "served-certificate-chain": self.served_certificate_chain,
            "validated-certificate-chain": self.validated_certificate_chain,
        }


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if not value.microsecond:
        spec = "seconds"
    elif value.microsecond % 1000 == 0:
        spec = "milliseconds"
    else:
        spec = "microseconds"
    return value.isoformat(timespec=spec).replace("+00:00", "Z")


_SCHEMA = ReportSchema()


def load_report(data: dict[str, Any]) -> Report:
    """Validate one report object; raise ValidationError with messages per field.

    Well-formed reports (the hot path) go through ``_fast_load``, which accepts
    only what the schema accepts and builds the same ``Report``; anything else
    goes through the schema, which accepts it after all or says what is wrong.
    The schema stays the definition: tests check both agree.
    """
    report = _fast_load(data)
    return report if report is not None else _SCHEMA.load(data)


_STATUS_SET = frozenset(RESPONSE_STATUSES)
_CERT_SET = frozenset(CERT_STATUSES)
_ABSENT = object()


class _NotFast(Exception):
    pass


def _fast_load(data: Any) -> Report | None:
    """``Report`` when every field has exactly the expected type and form, else None."""
    if type(data) is not dict:
        return None
    try:
        hostname = data["hostname"]
        status = data["response-status"]
        if type(hostname) is not str or type(status) is not str or status not in _STATUS_SET:
            return None
        port = data.get("port", 443)
        if type(port) is not int or not 1 <= port <= 65535:
            return None
        cert = data.get("cert-status")
        if cert is not None and (type(cert) is not str or cert not in _CERT_SET):
            return None
        ocsp = data.get("ocsp-response")
        if ocsp is not None:
            if type(ocsp) is not str or len(ocsp) > MAX_OCSP_CHARS:
                return None
            ocsp = decode_ocsp_text(ocsp)
        return Report(
            hostname=hostnames.normalise(hostname),
            response_status=status,
            port=port,
            date_time=_fast_date(data.get("date-time")),
            effective_expiration_date=_fast_date(data.get("effective-expiration-date")),
            cert_status=cert,
            ocsp_response=ocsp,
            served_certificate_chain=_fast_chain(data.get("served-certificate-chain", _ABSENT)),
            validated_certificate_chain=_fast_chain(data.get("validated-certificate-chain", _ABSENT)),
        )
    except (_NotFast, KeyError, ValueError, hostnames.HostnameError):
        return None


def _fast_date(value: Any) -> datetime | None:
    if value is None:
        return None
    if type(value) is not str:
        raise _NotFast
    return parse_rfc3339(value)


def _fast_chain(value: Any) -> list[str]:
    if value is _ABSENT:
        return []
    if type(value) is not list or len(value) > MAX_CHAIN_LENGTH:
        raise _NotFast
    for item in value:
        if type(item) is not str or len(item) > MAX_CERT_CHARS:
            raise _NotFast
    return list(value)
