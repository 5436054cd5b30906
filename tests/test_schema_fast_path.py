"""The hot path's validator agrees with the marshmallow schema, which stays the definition."""

from __future__ import annotations

import copy
import json

import pytest
from marshmallow import ValidationError

from collector.ingest import parse
from collector.ingest.schema import _SCHEMA, _fast_load
from tests import pki
from tests.conftest import PEERS

ODD_VALUES = [None, 0, 1, -1, 443, 65535, 65536, True, False, 1.5, "", " ", "x", "GOOD", "MISSING",
              "www.example.com", "WWW.Example.COM.", "10.0.0.1", "[::1]", "b\u00fccher.example",
              "2026-11-22T10:00:00Z", "2026-11-22T10:00:00.123+02:00", "2026-13-01T00:00:00Z",
              "AAAA", "@@@", "a" * 40000, [], ["x"], ["x"] * 11, [1], [None], {}, {"a": 1}]


def _candidates() -> list[dict]:
    ca = pki.make_ca()
    leaf = pki.make_leaf(ca, "www.example.com")
    found = [pki.chrome_report(leaf, ca),
             pki.chrome_report(leaf, ca, response_status="PROVIDED", cert_status="REVOKED",
                               ocsp_der=pki.ocsp_response(leaf, ca, status="revoked"))]
    for path in sorted(PEERS.glob("*.json")):
        try:
            body = json.loads(path.read_bytes())
        except ValueError:
            continue
        for kind in ("json", "reports"):
            try:
                extracted = parse.extract(body, kind, 100)
            except parse.Rejection:
                continue
            found += [c for _, c in extracted.candidates if isinstance(c, dict)]
    return found


def _schema(data):
    try:
        return _SCHEMA.load(data)
    except ValidationError:
        return None


@pytest.mark.parametrize("base_index", range(2))
def test_fast_path_and_schema_agree_on_every_single_field_change(base_index):
    base = _candidates()[base_index]
    fields = list(base) + ["port", "cert-status", "date-time", "unknown-field"]
    checked = 0
    for field in fields:
        for odd in ODD_VALUES:
            data = copy.deepcopy(base)
            data[field] = odd
            fast = _fast_load(data)
            if fast is not None:
                assert fast == _schema(data), (field, odd)
                checked += 1
            del data[field]
            fast = _fast_load(data)
            if fast is not None:
                assert fast == _schema(data), (field, "absent")
    assert checked > 20  # the fast path did take many of them


def test_fast_path_and_schema_agree_on_the_peer_fixtures():
    candidates = _candidates()
    assert len(candidates) > 2
    for data in candidates:
        fast = _fast_load(data)
        if fast is not None:
            assert fast == _schema(data)
    assert _fast_load(candidates[0]) is not None
