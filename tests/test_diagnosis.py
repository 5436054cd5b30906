"""Reports built from real certificates and staples get the right diagnosis, severity and details."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests import pki
from tests.conftest import PEERS, api, post


@pytest.fixture(scope="module")
def must_leaf(ca):
    return pki.make_leaf(ca, "www.example.com", must_staple=True)


def _send(client, site, report):
    response = post(client, site.site.id, report)
    assert response.status_code == 200, response.data
    host = report["hostname"] if isinstance(report, dict) and "hostname" in report else "www.example.com"
    [sample] = api(client, site, f"/hosts/{host}/reports?limit=1").get_json()["reports"]
    return sample


def test_revoked_staple_is_critical_with_revocation_details(client, site, ca, leaf):
    der = pki.ocsp_response(leaf, ca, status="revoked")
    sample = _send(client, site, pki.chrome_report(leaf, ca, response_status="PROVIDED",
                                                   cert_status="REVOKED", ocsp_der=der))
    assert sample["diagnosis"]["code"] == "revoked"
    assert sample["diagnosis"]["severity"] == "critical"
    assert "key_compromise" in sample["diagnosis"]["summary"]
    assert "replace the certificate" in sample["diagnosis"]["advice"]
    assert sample["ocsp"]["cert_status"] == "revoked"
    assert sample["ocsp"]["revocation_reason"] == "key_compromise"
    assert sample["ocsp"]["revocation_time"]
    assert sample["ocsp"]["matches_leaf"] is True and sample["ocsp"]["signature"] == "issuer"


def test_good_staple_decodes_fully(client, site, ca, leaf):
    der = pki.ocsp_response(leaf, ca)
    sample = _send(client, site, pki.chrome_report(leaf, ca, response_status="PROVIDED",
                                                   cert_status="GOOD", ocsp_der=der))
    ocsp_info, cert = sample["ocsp"], sample["certificate"]
    assert ocsp_info["response_status"] == "successful" and ocsp_info["cert_status"] == "good"
    assert ocsp_info["matches_leaf"] is True and ocsp_info["signature"] == "issuer"
    assert ocsp_info["serial"] == format(leaf.cert.serial_number, "x")
    assert 3500 <= ocsp_info["age_seconds"] <= 3700
    assert ocsp_info["time_left_seconds"] > 3 * 86400
    assert ocsp_info["produced_at"] and ocsp_info["this_update"] and ocsp_info["next_update"]
    assert cert["subject"] == "CN=www.example.com" and cert["sans"] == ["www.example.com"]
    assert cert["issuer"] == "CN=Test Root CA"
    assert cert["ocsp_urls"] == ["http://ocsp.example.test/"]
    assert cert["must_staple"] is False
    assert cert["fingerprint_sha256"] == leaf.cert.fingerprint(hashes.SHA256()).hex()
    assert sample["diagnosis"]["code"] == "unexplained"
    assert "the staple is signed by the issuer" in sample["findings"]


def test_unknown_status(client, site, ca, leaf):
    der = pki.ocsp_response(leaf, ca, status="unknown")
    sample = _send(client, site, pki.chrome_report(leaf, ca, response_status="PROVIDED",
                                                   cert_status="UNKNOWN", ocsp_der=der))
    assert (sample["diagnosis"]["code"], sample["diagnosis"]["severity"]) == ("unknown_to_ca", "warning")


def test_expired_staple_says_by_how_long(client, site, ca, must_leaf):
    der = pki.ocsp_response(must_leaf, ca, this_update=pki.now() - dt.timedelta(days=5),
                            next_update=pki.now() - dt.timedelta(days=2, minutes=1))
    sample = _send(client, site, pki.chrome_report(must_leaf, ca, response_status="INVALID_DATE", ocsp_der=der))
    diagnosis = sample["diagnosis"]
    assert diagnosis["code"] == "stale_staple"
    assert "expired 2 days 1 minute ago" in diagnosis["summary"]
    assert diagnosis["severity"] == "critical"  # Must-Staple: strict clients fail hard
    assert "Must-Staple" in diagnosis["summary"]
    assert "http://ocsp.example.test/" in diagnosis["advice"]
    assert sample["ocsp"]["time_left_seconds"] < 0


def test_not_yet_valid_staple(client, site, ca, leaf):
    der = pki.ocsp_response(leaf, ca, this_update=pki.now() + dt.timedelta(days=1))
    sample = _send(client, site, pki.chrome_report(leaf, ca, response_status="INVALID_DATE", ocsp_der=der))
    assert sample["diagnosis"]["code"] == "staple_not_yet_valid"


def test_staple_for_another_certificate_after_renewal(client, site, ca, leaf):
    old = pki.make_leaf(ca, "www.example.com")
    der = pki.ocsp_response(old, ca)
    sample = _send(client, site, pki.chrome_report(leaf, ca, response_status="NO_MATCHING_RESPONSE", ocsp_der=der))
    assert sample["diagnosis"]["code"] == "wrong_certificate"
    assert format(old.cert.serial_number, "x") in sample["diagnosis"]["summary"]
    assert "renewal" in sample["diagnosis"]["advice"]
    assert sample["ocsp"]["matches_leaf"] is False


def test_produced_at_outside_the_certificate_validity(client, site, ca):
    expired = pki.make_leaf(ca, "www.example.com", not_before=pki.now() - dt.timedelta(days=100), days=10)
    der = pki.ocsp_response(expired, ca)
    sample = _send(client, site, pki.chrome_report(expired, ca, response_status="BAD_PRODUCED_AT", ocsp_der=der))
    assert sample["diagnosis"]["code"] == "bad_produced_at"
    assert "producedAt" in sample["diagnosis"]["summary"]


@pytest.mark.parametrize(
    "der, words",
    [(pki.unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER), "try later"),
     (pki.unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR), "internal error"),
     (pki.unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED), "unauthorized")],
)
def test_unsuccessful_responder_answers(client, site, ca, leaf, der, words):
    sample = _send(client, site, pki.chrome_report(leaf, ca, response_status="ERROR_RESPONSE", ocsp_der=der))
    assert sample["diagnosis"]["code"] == "responder_error"
    assert words in sample["diagnosis"]["summary"]
    assert sample["ocsp"]["response_status"] == words.replace(" ", "_")


def test_reference_vectors_decode(client, site, ca, leaf):
    report = pki.chrome_report(leaf, ca, response_status="ERROR_RESPONSE")
    for vector, status in [("MAMKAQM=", "try_later"), ("MAMKAQI=", "internal_error"), ("MAMKAQY=", "unauthorized")]:
        report["ocsp-response"] = vector
        report["port"] = 440 + len(status)  # not a duplicate
        assert _send(client, site, report)["ocsp"]["response_status"] == status


def test_garbage_staple_is_a_finding_not_an_error(client, site, ca, leaf):
    report = pki.chrome_report(leaf, ca, response_status="PARSE_RESPONSE_ERROR")
    report["ocsp-response"] = "AAECAwQFBgc="
    sample = _send(client, site, report)
    assert sample["diagnosis"]["code"] == "unparsable_staple"
    assert sample["ocsp"]["response_status"] == "unparsable"


def test_missing_staple_on_a_must_staple_certificate_is_critical(client, site, ca, must_leaf):
    sample = _send(client, site, pki.chrome_report(must_leaf, ca, response_status="MISSING"))
    assert (sample["diagnosis"]["code"], sample["diagnosis"]["severity"]) == ("no_staple", "critical")
    assert sample["certificate"]["must_staple"] is True
    host = api(client, site, "/hosts/www.example.com").get_json()
    assert host["must_staple"] is True and host["last_severity"] == "critical"
    assert host["last_hour"]["by_diagnosis"] == {"no_staple": 1}
    assert host["latest_report"]["certificate"]["must_staple"] is True


def test_missing_staple_without_an_ocsp_url_blames_the_certificate(client, site, ca):
    no_url = pki.make_leaf(ca, "www.example.com", ocsp_url=None)
    sample = _send(client, site, pki.chrome_report(no_url, ca, response_status="MISSING"))
    assert sample["diagnosis"]["code"] == "no_ocsp_url"
    assert sample["diagnosis"]["severity"] == "warning"
    assert "certificate problem" in sample["diagnosis"]["advice"]
    assert sample["certificate"]["ocsp_urls"] == []


def test_delegated_responder_signature_verifies(client, site, ca, leaf):
    key = pki.ec.generate_private_key(pki.ec.SECP256R1())
    responder = x509.CertificateBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OCSP Responder")])
    ).issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(
        x509.random_serial_number()).not_valid_before(pki.now() - dt.timedelta(days=1)).not_valid_after(
        pki.now() + dt.timedelta(days=30)).add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False).sign(ca.key, hashes.SHA256())
    delegate = pki.Issued(responder, key)
    der = pki.ocsp_response(leaf, ca, signer=delegate, status="unknown")
    sample = _send(client, site, pki.chrome_report(leaf, ca, response_status="PROVIDED",
                                                   cert_status="UNKNOWN", ocsp_der=der))
    assert sample["ocsp"]["signature"] == "delegated"


def test_staple_signed_by_a_stranger_has_a_bad_signature(client, site, ca, leaf):
    stranger = pki.make_ca("Stranger CA")
    der = pki.ocsp_response(leaf, ca, signer=stranger)
    sample = _send(client, site, pki.chrome_report(leaf, ca, response_status="INVALID_DATE", ocsp_der=der))
    assert sample["ocsp"]["signature"] == "invalid"
    assert sample["diagnosis"]["code"] == "bad_signature"


def test_peer_dummy_chains_are_accepted_and_noted(client, site):
    response = post(client, site.site.id, (PEERS / "sentry_expect_staple_raw_report.json").read_bytes(),
                    content_type="application/expect-staple-report")
    assert response.status_code == 200
    [sample] = api(client, site, "/hosts/www.example.com/reports").get_json()["reports"]
    assert sample["certificate"] is None
    assert any("not a decodable certificate" in f for f in sample["findings"])
    assert sample["diagnosis"]["code"] == "responder_error"
    assert sample["diagnosis"]["severity"] == "warning"


def test_counts_by_diagnosis_beside_counts_by_status(client, site, ca, leaf):
    post(client, site.site.id, pki.chrome_report(leaf, ca, response_status="MISSING"))
    post(client, site.site.id, pki.chrome_report(leaf, ca, response_status="NO_MATCHING_RESPONSE",
                                                 ocsp_der=pki.ocsp_response(pki.make_leaf(ca), ca)))
    host = api(client, site, "/hosts/www.example.com").get_json()
    assert host["last_day"]["by_status"] == {"MISSING": 1, "NO_MATCHING_RESPONSE": 1}
    assert host["last_day"]["by_diagnosis"] == {"no_staple": 1, "wrong_certificate": 1}
    series = api(client, site, "/hosts/www.example.com/series?range=1h&step=1m").get_json()["points"]
    assert sum(p["by_diagnosis"].get("no_staple", 0) for p in series) == 1
