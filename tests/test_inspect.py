"""`staple-collector inspect` on real files from openssl, and `staple-collector header`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pki
from tests.test_serve import _env

CLI = str(Path(sys.executable).parent / "staple-collector")

CONFIG = """[req]
distinguished_name = dn
req_extensions = ext
prompt = no
[dn]
CN = www.example.com
[ext]
subjectAltName = DNS:www.example.com
{feature}
"""
FORMS = {
    "tlsfeature": "tlsfeature = status_request",
    "raw-der": "1.3.6.1.5.5.7.1.24 = DER:30:03:02:01:05",
    "none": "",
}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, env=_env())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("openssl")
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", d / "key.pem"],
                   check=True)
    for name, line in FORMS.items():
        (d / f"{name}.cnf").write_text(CONFIG.format(feature=line))
        subprocess.run(["openssl", "req", "-new", "-key", d / "key.pem", "-config", d / f"{name}.cnf",
                        "-out", d / f"{name}.csr"], check=True)
        subprocess.run(["openssl", "req", "-x509", "-key", d / "key.pem", "-config", d / f"{name}.cnf",
                        "-extensions", "ext", "-days", "30", "-out", d / f"{name}.crt"], check=True)
        subprocess.run(["openssl", "x509", "-in", d / f"{name}.crt", "-outform", "DER",
                        "-out", d / f"{name}.der"], check=True)
    return d


@pytest.mark.parametrize("form, expected", [("tlsfeature", True), ("raw-der", True), ("none", False)])
def test_csr_must_staple_in_both_openssl_config_forms(files, form, expected):
    result = _run("inspect", str(files / f"{form}.csr"), "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["kind"] == "csr" and body["must_staple"] is expected
    human = _run("inspect", str(files / f"{form}.csr")).stdout
    assert ("requests OCSP Must-Staple" in human) is expected
    assert ("does not request OCSP Must-Staple" in human) is (not expected)


@pytest.mark.parametrize("suffix", ["crt", "der"])
@pytest.mark.parametrize("form, expected", [("tlsfeature", True), ("raw-der", True), ("none", False)])
def test_certificates_pem_and_der(files, form, expected, suffix):
    body = json.loads(_run("inspect", str(files / f"{form}.{suffix}"), "--json").stdout)
    assert body["kind"] == "certificate" and body["must_staple"] is expected
    assert body["ocsp_urls"] == []  # openssl req -x509 adds no AIA


def test_chain_lists_ocsp_urls(tmp_path):
    ca = pki.make_ca()
    leaf = pki.make_leaf(ca, must_staple=True, ocsp_url="http://ocsp.ca.test/")
    path = tmp_path / "chain.pem"
    path.write_text(leaf.pem + ca.pem)
    body = json.loads(_run("inspect", str(path), "--json").stdout)
    assert body["kind"] == "chain" and body["must_staple"] is True
    assert body["ocsp_urls"] == ["http://ocsp.ca.test/"]
    assert len(body["certificates"]) == 2
    assert "OCSP URL      http://ocsp.ca.test/" in _run("inspect", str(path)).stdout


@pytest.mark.parametrize("encoding", ["der", "base64", "pem"])
def test_ocsp_response_status_dates_and_freshness(tmp_path, encoding):
    ca = pki.make_ca()
    leaf = pki.make_leaf(ca)
    der = pki.ocsp_response(leaf, ca, status="revoked")
    path = tmp_path / "resp"
    if encoding == "der":
        path.write_bytes(der)
    elif encoding == "base64":
        path.write_text(pki.b64(der) + "\n")
    else:
        path.write_text(f"-----BEGIN OCSP RESPONSE-----\n{pki.b64(der)}\n-----END OCSP RESPONSE-----\n")
    body = json.loads(_run("inspect", str(path), "--json").stdout)
    assert body["kind"] == "ocsp-response" and body["response_status"] == "successful"
    assert body["cert_status"] == "revoked" and body["fresh"] is True
    assert body["this_update"] and body["next_update"] and body["time_left_seconds"] > 0
    human = _run("inspect", str(path)).stdout
    assert "cert status   revoked" in human and "It is fresh." in human


def test_stale_ocsp_response_is_not_fresh(tmp_path):
    import datetime as dt
    ca = pki.make_ca()
    leaf = pki.make_leaf(ca)
    der = pki.ocsp_response(leaf, ca, this_update=pki.now() - dt.timedelta(days=6),
                            next_update=pki.now() - dt.timedelta(days=1))
    (tmp_path / "stale.der").write_bytes(der)
    body = json.loads(_run("inspect", str(tmp_path / "stale.der"), "--json").stdout)
    assert body["fresh"] is False and body["time_left_seconds"] < 0
    (tmp_path / "trylater.der").write_bytes(pki.unsuccessful())
    body = json.loads(_run("inspect", str(tmp_path / "trylater.der"), "--json").stdout)
    assert body["response_status"] == "try_later"


def test_unreadable_files_fail_clearly(tmp_path):
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    result = _run("inspect", str(junk))
    assert result.returncode != 0 and "not a certificate, chain, CSR or OCSP response" in result.stderr
    missing = _run("inspect", str(tmp_path / "nope.pem"))
    assert missing.returncode != 0 and "cannot read" in missing.stderr
    key = tmp_path / "key.pem"
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    result = _run("inspect", str(key))
    assert result.returncode != 0 and "unsupported PEM blocks" in result.stderr


def test_header_command(tmp_path):
    data = str(tmp_path / "data")
    site = json.loads(_run("site", "create", "H", "--json", "--data-dir", data).stdout)
    out = _run("header", site["id"], "--max-age", "86400", "--include-subdomains", "--preload",
               "--data-dir", data).stdout.strip()
    assert out == (f'Expect-Staple: max-age=86400; report-uri="https://collector.example/r/{site["id"]}/staple"; '
                   "includeSubDomains; preload")
    plain = _run("header", site["id"], "--data-dir", data).stdout.strip()
    assert plain.endswith('/staple"') and plain.startswith("Expect-Staple: max-age=31536000;")
    unknown = _run("header", "0123456789abcdef", "--data-dir", data)
    assert unknown.returncode == 2 and "no site" in unknown.stderr
