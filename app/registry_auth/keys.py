"""The key that signs registry tokens and the certificate the replicas trust it by.

Distribution 2.8 finds the signing key of a token through the certificate in the JWT's `x5c`
header and accepts it when that certificate is in its `rootcertbundle`; 3.x can also match the
key itself. The certificate here is self-signed, so it is its own root: the bundle is this one
file. In production both files come from the settings (every API and worker process must sign
with the same key); in development they are generated once into the state directory.
"""

from __future__ import annotations

import base64
import fcntl
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.config import Settings

ALGORITHM = "ES256"
KEY_FILE = "token-key.pem"
CERTIFICATE_FILE = "token-cert.pem"
CERTIFICATE_YEARS = 10


class SigningKeyError(RuntimeError):
    """The configured key or certificate cannot be read, or they do not belong together."""


@dataclass(frozen=True)
class SigningKey:
    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    certificate_path: Path

    @property
    def x5c(self) -> list[str]:
        """The JWT `x5c` header: the certificate, DER in standard base64."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return [base64.b64encode(der).decode()]

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()


def signing_key(settings: Settings) -> SigningKey:
    key_path, certificate_path = key_paths(settings)
    return _load(key_path, certificate_path)


def key_paths(settings: Settings) -> tuple[Path, Path]:
    if settings.registry_auth_key_file and settings.registry_auth_certificate_file:
        return settings.registry_auth_key_file, settings.registry_auth_certificate_file
    directory = settings.registry_auth_dir
    key_path, certificate_path = directory / KEY_FILE, directory / CERTIFICATE_FILE
    _generate_once(directory, key_path, certificate_path)
    return key_path, certificate_path


@lru_cache(maxsize=8)
def _load(key_path: Path, certificate_path: Path) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"cannot read the registry token key or certificate: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SigningKeyError(f"{key_path} is not a P-256 EC private key (ES256 needs one)")
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    certified = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != certified:
        raise SigningKeyError(f"{certificate_path} does not certify the key in {key_path}")
    return SigningKey(key, certificate, certificate_path)


def _generate_once(directory: Path, key_path: Path, certificate_path: Path) -> None:
    """Creates the pair unless it exists; a lock keeps two processes from writing two pairs."""
    if key_path.exists() and certificate_path.exists():
        return
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if key_path.exists() and certificate_path.exists():
            return
        key, certificate = generate_pair("Cartridge registry token signer")
        _write(key_path, key, 0o600)
        _write(certificate_path, certificate, 0o644)


def generate_pair(common_name: str) -> tuple[bytes, bytes]:
    """A fresh P-256 key and a self-signed certificate for it, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365 * CERTIFICATE_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, content: bytes, mode: int) -> None:
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    os.replace(temporary, path)
