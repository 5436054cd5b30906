"""Why a report was sent, and how bad it is: one stable diagnosis code per report.

Pure functions over the report's fields and what ``collector.decode`` found.
The decoded staple is the stronger evidence; where there is none (no staple,
or it did not decode) the client's ``response-status`` decides.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from collector import decode

CRITICAL = "critical"
WARNING = "warning"

MUST_STAPLE_NOTE = (
    " The certificate has OCSP Must-Staple, so strict clients refuse to connect without a valid staple."
)

# code -> (summary template, advice). Codes are stable: stored, counted and alerted on.
CATALOGUE: dict[str, tuple[str, str]] = {
    "no_staple": (
        "The server sent no OCSP staple.",
        "Turn OCSP stapling on (nginx: `ssl_stapling on; ssl_stapling_verify on;` with a `resolver`; "
        "Apache: `SSLUseStapling on` and an `SSLStaplingCache`). If it is on, the server has a cold "
        "stapling cache after a restart (nginx fetches the first response lazily: prime it with a "
        "request, or serve a pre-fetched `ssl_stapling_file`), or it cannot reach the CA's OCSP "
        "responder{url}: check DNS and outbound HTTP from the server, and its error log.",
    ),
    "stale_staple": (
        "The stapled OCSP response expired {ago} ago (nextUpdate {next_update}).",
        "The server keeps serving a cached response because refreshing it fails. Check that the "
        "server can reach the responder{url}, look for OCSP errors in its log, and reload it so it "
        "fetches a fresh response. Servers should refresh well before nextUpdate.",
    ),
    "staple_too_old": (
        "The stapled OCSP response is older than clients accept (thisUpdate {this_update}, {age} ago).",
        "Clients reject responses whose thisUpdate is more than 7 days old even before nextUpdate. "
        "The server is not refreshing its staple: check its OCSP fetches and reload it.",
    ),
    "staple_not_yet_valid": (
        "The stapled OCSP response is not valid yet (thisUpdate {this_update} is in the future).",
        "Check the clocks of the server and of the clients reporting this; a responder that dates "
        "responses ahead is the CA's problem: report it.",
    ),
    "wrong_certificate": (
        "The staple is for a different certificate (staple serial {staple_serial}, served "
        "certificate {leaf_serial}).",
        "Typical after a certificate renewal: the server still staples the old certificate's "
        "response. Reload or restart the server so it fetches a response for the new certificate, "
        "and refresh any `ssl_stapling_file` or shared stapling cache.",
    ),
    "responder_error": (
        "The CA's OCSP responder answered {status} instead of a certificate status.",
        "This is on the CA's side (tryLater, internalError) or the responder does not serve this "
        "certificate (unauthorized: check that the issuer certificate and the AIA OCSP URL are "
        "right). A good server keeps stapling its last valid response until it expires, and does "
        "not staple error responses; contact the CA if it persists.",
    ),
    "bad_produced_at": (
        "The staple's producedAt ({produced_at}) is outside the certificate's validity "
        "({not_before} to {not_after}).",
        "The response was produced before this certificate existed or after it expired: the server "
        "is stapling a response cached for an older certificate, or the CA's responder is "
        "misbehaving. Reload the server; report persistent cases to the CA.",
    ),
    "revoked": (
        "The CA says this certificate is REVOKED{revoked_detail}.",
        "Emergency: replace the certificate now, with a new private key, and find out why it was "
        "revoked (key compromise, mis-issuance, a request from your own account). Every client that "
        "checks revocation refuses this certificate.",
    ),
    "unknown_to_ca": (
        "The CA's OCSP responder does not know this certificate (status UNKNOWN).",
        "The responder URL or the issuer is wrong for this certificate (a certificate from another "
        "CA or intermediate), or the CA has not published status for a brand-new certificate yet. "
        "Check the chain the server sends and the certificate's AIA OCSP URL.",
    ),
    "no_ocsp_url": (
        "The certificate has no OCSP responder URL, so it cannot be stapled at all.",
        "This is a certificate problem, not a server one: the CA does not offer OCSP for it (Let's "
        "Encrypt removed OCSP URLs from its certificates in May 2025 and switched its responders off "
        "in August 2025). Stop sending Expect-Staple for this host and never request Must-Staple "
        "from such a CA; if you need stapling, use a certificate from a CA that still runs OCSP.",
    ),
    "unparsable_staple": (
        "The stapled bytes are not a parsable OCSP response{error}.",
        "The server staples garbage: a corrupted stapling cache or `ssl_stapling_file`, or a proxy "
        "or load balancer mangling the handshake. Clear or regenerate the cache or file and reload.",
    ),
    "bad_signature": (
        "The staple's signature does not verify against the issuer or a delegated responder.",
        "The response belongs to another issuer (a chain mix-up) or is corrupted or forged. Check "
        "the chain the server sends and where its stapling cache or file comes from.",
    ),
    "unexplained": (
        "The client reported {status}; nothing more specific could be determined.",
        "Look at the sample's certificate and OCSP details; if the chain did not decode, the "
        "reporting client sent placeholder certificates.",
    ),
}

_STATUS_FALLBACK = {
    "MISSING": "no_staple",
    "ERROR_RESPONSE": "responder_error",
    "BAD_PRODUCED_AT": "bad_produced_at",
    "NO_MATCHING_RESPONSE": "wrong_certificate",
    "INVALID_DATE": "stale_staple",
    "PARSE_RESPONSE_ERROR": "unparsable_staple",
    "PARSE_RESPONSE_DATA_ERROR": "unparsable_staple",
}


@dataclass(frozen=True)
class Diagnosis:
    code: str
    severity: str
    summary: str
    advice: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "summary": self.summary,
                "advice": self.advice}


@dataclass(frozen=True)
class Analysis:
    diagnosis: Diagnosis
    leaf: decode.CertInfo | None
    ocsp: decode.OcspInfo | None
    findings: tuple[str, ...]

    @property
    def must_staple(self) -> bool | None:
        return self.leaf.must_staple if self.leaf else None


def _human(delta: dt.timedelta) -> str:
    """``1 day 6 hours``, ``3 hours 5 minutes``, ``42 seconds``: the two largest units."""
    seconds = int(abs(delta.total_seconds()))
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n} {unit}{'s' if n != 1 else ''}")
        if len(parts) == 2 or (parts and not seconds):
            break
    return " ".join(parts[:2]) or "0 seconds"


def judgement_time(date_time: dt.datetime | None, received: dt.datetime) -> dt.datetime:
    """When to judge a staple's dates: when the client saw it, if that is plausible."""
    if date_time and received - dt.timedelta(days=7) <= date_time <= received + dt.timedelta(minutes=5):
        return date_time
    return received


def analyse(
    *,
    response_status: str,
    cert_status: str | None,
    ocsp_der: bytes | None,
    served_chain: tuple[str, ...] | list[str],
    validated_chain: tuple[str, ...] | list[str] = (),
    at: dt.datetime,
) -> Analysis:
    """Diagnose one report at time ``at`` (see ``judgement_time``)."""
    chain_texts = tuple(served_chain) or tuple(validated_chain)
    chain = decode.decode_chain(chain_texts)
    findings = list(chain.errors)
    leaf = chain.leaf
    issuer = chain.issuer_of(leaf) if leaf else None
    if leaf is None and not chain_texts:
        findings.append("the report carries no certificate chain")
    if leaf and issuer is None:
        findings.append("the issuer of the leaf is not in the chain: the staple's signature is unverified")

    info = None
    if ocsp_der is not None:
        info = decode.decode_ocsp(
            ocsp_der,
            chain_texts[0] if leaf else None,
            next((t for t, c in zip(chain_texts, chain.certs, strict=True) if c is issuer), None) if issuer else None,
        )
        if info.successful and info.signature == "issuer":
            findings.append("the staple is signed by the issuer")
        elif info.successful and info.signature == "delegated":
            findings.append("the staple is signed by a delegated OCSP responder")

    code, params = _decide(response_status, cert_status, info, leaf, at)
    if code == "no_staple" and leaf is not None and not leaf.ocsp_urls:
        code = "no_ocsp_url"
    if code not in ("no_ocsp_url",) and leaf is not None and not leaf.ocsp_urls:
        findings.append("the certificate has no OCSP responder URL")
    params.setdefault("status", response_status)
    params["url"] = f" ({leaf.ocsp_urls[0]})" if leaf and leaf.ocsp_urls else ""
    summary_t, advice_t = CATALOGUE[code]
    summary = summary_t.format_map(_Defaults(params))
    advice = advice_t.format_map(_Defaults(params))
    severity = CRITICAL if code == "revoked" or (leaf is not None and leaf.must_staple) else WARNING
    if leaf is not None and leaf.must_staple:
        summary += MUST_STAPLE_NOTE
    return Analysis(Diagnosis(code, severity, summary, advice), leaf, info, tuple(findings))


class _Defaults(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def _decide(
    response_status: str,
    cert_status: str | None,
    info: decode.OcspInfo | None,
    leaf: decode.CertInfo | None,
    at: dt.datetime,
) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {}
    if info is not None:
        if info.response_status == "unparsable":
            params["error"] = f" ({info.error})" if info.error else ""
            return "unparsable_staple", params
        if not info.successful:
            params["status"] = info.response_status.replace("_", " ")
            return "responder_error", params
        if info.matches_leaf is False:
            params.update(staple_serial=info.serial, leaf_serial=leaf.serial if leaf else "?")
            return "wrong_certificate", params
        if leaf and info.produced_at and not leaf.not_before <= info.produced_at <= leaf.not_after:
            params.update(produced_at=decode.iso(info.produced_at), not_before=decode.iso(leaf.not_before),
                          not_after=decode.iso(leaf.not_after))
            return "bad_produced_at", params
        if info.cert_status == "revoked":
            return "revoked", _revoked_params(info)
        if info.this_update and info.this_update > at:
            params["this_update"] = decode.iso(info.this_update)
            return "staple_not_yet_valid", params
        if info.next_update and info.next_update <= at:
            params.update(ago=_human(at - info.next_update), next_update=decode.iso(info.next_update))
            return "stale_staple", params
        if info.this_update and info.this_update < at - decode.MAX_OCSP_AGE:
            params.update(this_update=decode.iso(info.this_update), age=_human(at - info.this_update))
            return "staple_too_old", params
        if info.cert_status == "unknown":
            return "unknown_to_ca", params
        if info.signature == "invalid":
            return "bad_signature", params
    if response_status == "PROVIDED":
        if cert_status == "REVOKED":
            return "revoked", {"revoked_detail": ""}
        if cert_status == "UNKNOWN":
            return "unknown_to_ca", params
        return "unexplained", params
    code = _STATUS_FALLBACK.get(response_status, "unexplained")
    if code == "stale_staple":
        params.update(ago="an unknown time", next_update="unknown: no staple in the report")
    if code == "wrong_certificate":
        params.update(staple_serial="unknown", leaf_serial=leaf.serial if leaf else "unknown")
    if code == "bad_produced_at":
        params.update(produced_at="?", not_before=decode.iso(leaf.not_before) if leaf else "?",
                      not_after=decode.iso(leaf.not_after) if leaf else "?")
    if code == "unparsable_staple":
        params["error"] = ""
    if code == "responder_error":
        params["status"] = "an error"
    return code, params


def _revoked_params(info: decode.OcspInfo) -> dict[str, Any]:
    parts = []
    if info.revocation_time:
        parts.append(f"since {decode.iso(info.revocation_time)}")
    if info.revocation_reason:
        parts.append(f"reason {info.revocation_reason}")
    return {"revoked_detail": f" ({', '.join(parts)})" if parts else ""}
