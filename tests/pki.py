"""Real certificates and OCSP responses for tests, built with ``cryptography``."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

UTC = dt.UTC


def now() -> dt.datetime:
    return dt.datetime.now(UTC).replace(microsecond=0)


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str = "Test Root CA") -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    start = now() - dt.timedelta(days=30)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_leaf(
    ca: Issued,
    hostname: str = "www.example.com",
    *,
    must_staple: bool = False,
    ocsp_url: str | None = "http://ocsp.example.test/",
    not_before: dt.datetime | None = None,
    days: int = 90,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or now() - dt.timedelta(days=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(hostname))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if ocsp_url:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                        x509.UniformResourceIdentifier(ocsp_url))]
            ),
            critical=False,
        )
    if must_staple:
        builder = builder.add_extension(
            x509.TLSFeature([x509.TLSFeatureType.status_request]), critical=False
        )
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def ocsp_response(
    leaf: Issued,
    issuer: Issued,
    *,
    status: str = "good",
    this_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
    revoked_at: dt.datetime | None = None,
    signer: Issued | None = None,
) -> bytes:
    """A signed, successful OCSP response for ``leaf`` (DER)."""
    this_update = this_update or now() - dt.timedelta(hours=1)
    next_update = next_update or this_update + dt.timedelta(days=4)
    cert_status = {
        "good": ocsp.OCSPCertStatus.GOOD,
        "revoked": ocsp.OCSPCertStatus.REVOKED,
        "unknown": ocsp.OCSPCertStatus.UNKNOWN,
    }[status]
    signer = signer or issuer
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=leaf.cert,
        issuer=issuer.cert,
        algorithm=hashes.SHA1(),
        cert_status=cert_status,
        this_update=this_update,
        next_update=next_update,
        revocation_time=(revoked_at or now() - dt.timedelta(hours=2)) if status == "revoked" else None,
        revocation_reason=x509.ReasonFlags.key_compromise if status == "revoked" else None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
    if signer is not issuer:
        builder = builder.certificates([signer.cert])
    return builder.sign(signer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def unsuccessful(status: ocsp.OCSPResponseStatus = ocsp.OCSPResponseStatus.TRY_LATER) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def chrome_report(
    leaf: Issued, ca: Issued, *, response_status: str = "MISSING", hostname: str | None = None,
    ocsp_der: bytes | None = None, cert_status: str | None = None, port: int = 443,
) -> dict:
    """A report as Chrome's SerializeExpectStapleReport built it."""
    chain = [leaf.pem, ca.pem]
    report = {
        "date-time": now().strftime("%Y-%m-%dT%H:%M:%S.123Z"),
        "hostname": hostname or leaf.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
        "port": port,
        "response-status": response_status,
        "served-certificate-chain": chain,
        "validated-certificate-chain": chain,
    }
    if ocsp_der is not None:
        report["ocsp-response"] = b64(ocsp_der)
    if cert_status is not None:
        report["cert-status"] = cert_status
    return report
