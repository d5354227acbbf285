"""The local balancers' certificates: ACM's, issued by the local CA.

An ALB's HTTPS listener names an ACM certificate by ARN; ACM never gives
anyone its private key, and the emulator's own (moto's) is signed by no CA a
client trusts. Locally the local CA (.local/ca, made once by make up: the
local_ca role) stands in for ACM's issuing CA: for each certificate a
listener names, the controller issues one with the names ACM says the
certificate covers (DescribeCertificate), plus the address the local URL
uses (127.0.0.1 and localhost: local only, the published port is all a
browser here can reach), and keeps it with its key in the balancer's
configuration directory (mode 0600, never logged). A client that trusts the
local CA (the fleet's tests, the headless browser) verifies the balancer as
a client on AWS verifies an ALB.

Issued again when the names change, when the CA changes, or within 30 days
of the end of its validity (90 days).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

VALID_DAYS = 90
RENEW_DAYS = 30
# the local URL's host (local only: see the module's docstring)
LOCAL_NAMES = ("localhost",)
LOCAL_IPS = ("127.0.0.1", "::1")


def _ca_certificate(ca_dir: Path) -> Any:
    from cryptography import x509

    return x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())


def issue_pem(
    ca_dir: Path,
    names: Iterable[str],
    now: datetime.datetime | None = None,
    valid_days: int = VALID_DAYS,
) -> bytes:
    """A server certificate for ``names`` (the first its subject) and the
    local URL's host, signed by the local CA; its chain and its new key
    (P-256), as one PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = _ca_certificate(ca_dir)
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    now = now or datetime.datetime.now(datetime.UTC)
    names = list(dict.fromkeys([*names, *LOCAL_NAMES]))
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.DNSName(n) for n in names] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in LOCAL_IPS
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # strict verifiers (Python 3.13's default context) want both
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def needs_issuing(path: Path, ca_dir: Path, now: datetime.datetime | None = None) -> bool:
    """Whether the PEM at ``path`` is missing, from another CA, or near its end."""
    from cryptography import x509

    try:
        text = path.read_bytes()
        cert = x509.load_pem_x509_certificate(text)
        ca_cert = _ca_certificate(ca_dir)
    except (OSError, ValueError):
        return True
    now = now or datetime.datetime.now(datetime.UTC)
    if cert.issuer != ca_cert.subject:
        return True
    try:
        cert.verify_directly_issued_by(ca_cert)
    except Exception:  # whatever fails: issue it again
        return True
    return cert.not_valid_after_utc - now < datetime.timedelta(days=RENEW_DAYS)


def file_name(arn: str, names: Iterable[str]) -> str:
    """One file per certificate and set of names (new names: a new file, so
    the balancer's configuration changes and it reloads)."""
    digest = hashlib.sha256("\n".join([arn, *names]).encode()).hexdigest()[:16]
    return f"{digest}.pem"


def _stamp(*paths: Path) -> tuple[int, ...]:
    """The files' modification times (-1: missing)."""
    out = []
    for path in paths:
        try:
            out.append(path.stat().st_mtime_ns)
        except OSError:
            out.append(-1)
    return tuple(out)


class Certificates:
    """The certificates the controller issued, by ACM ARN."""

    # A checked certificate is checked again (parsed, verified against the
    # CA, its end compared) once its file or the CA's changed, or an hour
    # later: not on every pass of the controller (every half second).
    RECHECK = datetime.timedelta(hours=1)

    def __init__(self, acm: Any, ca_dir: Path) -> None:
        self.acm = acm
        self.ca_dir = ca_dir
        self.names: dict[str, tuple[str, ...]] = {}  # ARN -> names ACM gave
        # file -> (its and the CA's modification times, when to check again)
        self.checked: dict[Path, tuple[tuple[int, ...], datetime.datetime]] = {}

    def ca_ready(self) -> bool:
        return (self.ca_dir / "ca.crt").is_file() and (self.ca_dir / "ca.key").is_file()

    def names_of(self, arn: str) -> tuple[str, ...]:
        if arn not in self.names:
            cert = self.acm.describe_certificate(CertificateArn=arn)["Certificate"]
            names = [cert.get("DomainName", ""), *(cert.get("SubjectAlternativeNames") or [])]
            self.names[arn] = tuple(dict.fromkeys(n for n in names if n))
        return self.names[arn]

    def ensure(self, arn: str, directory: Path) -> Path:
        """The file of the certificate for ``arn`` in ``directory`` (cert,
        chain and key in one PEM, HAProxy's crt): issued when missing, from
        another CA or near its end."""
        names = self.names_of(arn)
        path = directory / file_name(arn, names)
        now = datetime.datetime.now(datetime.UTC)
        stamp = _stamp(path, self.ca_dir / "ca.crt")
        seen = self.checked.get(path)
        if seen is not None and seen[0] == stamp and now < seen[1]:
            return path
        if needs_issuing(path, self.ca_dir, now):
            directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(issue_pem(self.ca_dir, names))
            os.replace(tmp, path)
        self.checked[path] = (_stamp(path, self.ca_dir / "ca.crt"), now + self.RECHECK)
        return path

    @staticmethod
    def remove_all(directory: Path) -> None:
        """Every certificate file in ``directory`` (its balancer has no
        HTTPS listener any more)."""
        for old in directory.glob("*.pem") if directory.is_dir() else ():
            old.unlink(missing_ok=True)
