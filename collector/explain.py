"""A stored sample report, explained: diagnosis text, findings, decoded certificate and staple."""

from __future__ import annotations

from typing import Any

from collector import decode, diagnosis
from collector.ingest.schema import parse_rfc3339


def explain(sample: dict[str, Any]) -> dict[str, Any]:
    """Add the decoded leaf certificate and staple to a stored sample.

    Decoding is memoised, so this costs little for the certificates and staples
    ingest already saw. The stored diagnosis stays as it was judged on arrival.
    """
    received = parse_rfc3339(sample["received_at"])
    try:
        sent = parse_rfc3339(sample["date-time"]) if sample.get("date-time") else None
    except ValueError:
        sent = None
    ocsp_text = sample.get("ocsp-response")
    analysis = diagnosis.analyse(
        response_status=sample["response-status"],
        cert_status=sample.get("cert-status"),
        ocsp_der=decode.ocsp_der_from_text(ocsp_text) if ocsp_text else None,
        served_chain=sample.get("served-certificate-chain") or [],
        validated_chain=sample.get("validated-certificate-chain") or [],
        at=(at := diagnosis.judgement_time(sent, received)),
    )
    stored = sample.get("diagnosis") or {}
    sample["diagnosis"] = analysis.diagnosis.to_dict()
    if stored.get("code") == analysis.diagnosis.code:
        # The judgement made on arrival stands (the same inputs give the same code).
        sample["diagnosis"]["severity"] = stored.get("severity", analysis.diagnosis.severity)
    sample["findings"] = list(analysis.findings)
    sample["certificate"] = analysis.leaf.to_dict() if analysis.leaf else None
    sample["ocsp"] = analysis.ocsp.to_dict(at) if analysis.ocsp else None
    return sample
