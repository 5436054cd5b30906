"""From request bytes to candidate report objects: media type, JSON, shape.

Pure functions: no Flask, no Redis. Whatever is wrong raises ``Rejection``,
which carries the HTTP status and the reason code it is counted under.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

DRAFT_TYPE = "application/expect-staple-report"
JSON_TYPE = "application/json"
BATCH_TYPE = "application/reports+json"
MEDIA_TYPES = (DRAFT_TYPE, JSON_TYPE, BATCH_TYPE)

WRAPPER = "expect-staple-report"

# Neighbouring report formats people point at the wrong endpoint, and how to name them.
_FOREIGN_WRAPPERS = {
    "expect-ct-report": "an Expect-CT report",
    "csp-report": "a CSP violation report",
}


@dataclass
class Rejection(Exception):
    status: int
    code: str
    message: str
    fields: dict[str, Any] | None = None
    # How many reports this rejection stands for in the site's counters.
    count: int = 1


@dataclass
class Extracted:
    """Report objects to validate (with the shape they came in), and entries
    ignored with their reason codes."""

    candidates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    batch: bool = False


def media_type(header: str | None) -> str:
    """The bare media type of a Content-Type; 415 for anything we do not take."""
    if not header:
        raise Rejection(415, "unsupported_media_type", "Content-Type is missing.")
    kind, _, params = header.partition(";")
    kind = kind.strip().lower()
    if kind not in MEDIA_TYPES:
        raise Rejection(
            415,
            "unsupported_media_type",
            f"Content-Type {kind!r} is not accepted; send {', '.join(MEDIA_TYPES)}.",
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
            if charset not in ("utf-8", "utf8"):
                raise Rejection(
                    415, "unsupported_media_type", f"charset {charset!r} is not accepted; use utf-8."
                )
    return kind


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    if not body:
        raise Rejection(400, "invalid_json", "The body is empty.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejection(400, "invalid_json", "The body is not UTF-8.") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        message = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise Rejection(400, "invalid_json", f"The body is not valid JSON: {message}.") from None


def _foreign_kind(obj: dict[str, Any]) -> str | None:
    for key, label in _FOREIGN_WRAPPERS.items():
        if key in obj:
            return label
    if "known-pins" in obj:
        return "an HPKP report"
    return None


def _is_staple_body(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    if isinstance(body.get(WRAPPER), dict):
        return True
    return "response-status" in body and "hostname" in body and _foreign_kind(body) is None


def extract(payload: Any, kind: str, max_batch: int) -> Extracted:
    if kind == BATCH_TYPE:
        return _extract_batch(payload, max_batch)
    if isinstance(payload, list):
        raise Rejection(
            400, "invalid_report",
            f"Expected one report object; send batches as {BATCH_TYPE}.",
        )
    if not isinstance(payload, dict):
        raise Rejection(400, "invalid_report", "Expected a JSON object.")
    if WRAPPER in payload:
        inner = payload[WRAPPER]
        if not isinstance(inner, dict):
            raise Rejection(
                400, "invalid_report", f"{WRAPPER!r} must be an object.",
                {WRAPPER: ["Not an object."]},
            )
        return Extracted(candidates=[("draft", inner)])
    foreign = _foreign_kind(payload)
    if foreign:
        raise Rejection(
            400, "not_expect_staple",
            f"This is {foreign}, not an Expect-Staple report; this endpoint takes only Expect-Staple.",
        )
    return Extracted(candidates=[("chrome", payload)])


def _extract_batch(payload: Any, max_batch: int) -> Extracted:
    if not isinstance(payload, list):
        raise Rejection(400, "invalid_batch", f"A {BATCH_TYPE} body must be a JSON array.")
    if len(payload) > max_batch:
        raise Rejection(
            400, "invalid_batch", f"The batch has {len(payload)} entries; at most {max_batch} are taken."
        )
    out = Extracted(batch=True)
    for entry in payload:
        body = entry.get("body") if isinstance(entry, dict) else None
        if isinstance(entry, dict) and (entry.get("type") == "expect-staple" or _is_staple_body(body)):
            if isinstance(body, dict) and isinstance(body.get(WRAPPER), dict):
                body = body[WRAPPER]
            out.candidates.append(("reporting-api", body if isinstance(body, dict) else {}))
        else:
            out.ignored.append("not_expect_staple")
    if not out.candidates:
        raise Rejection(
            400, "not_expect_staple",
            f"None of the {len(payload)} entries is an Expect-Staple report.",
            count=max(1, len(payload)),
        )
    return out
