"""TLS material for mutual TLS between the docker CLI and the guest engine, and SSH keys.

Like docker-machine (libmachine/cert): one CA and one client certificate per user in `<store>/certs/`,
one server certificate per machine in the machine's folder. Unlike docker-machine, the server cert
always names 127.0.0.1, localhost and the machine name besides the IP (NAT forwards and VPNs keep
working), and host.py re-issues it when the IP changes.

API:
    ensure_ca_and_client(certs_dir, org=None) -> bool     # create or renew (expired/missing); True if (re)made
    issue_server_cert(ca_cert, ca_key, cert_out, key_out, sans, org)  # SANs: IPs and DNS names, mixed
    server_cert_sans(cert_path) -> list[str]              # the names a cert holds (for checks and tests)
    cert_valid(cert_path, ca_cert=None) -> bool           # parses, not expired (and signed by ca_cert)
    generate_ssh_key(private_path) -> str                 # RSA key in OpenSSH format + .pub; returns pub line
    write_private(path, data)                             # atomic, mode 0600

Keys are ECDSA P-256 for TLS (fast to make; accepted by Go's and Python's TLS stacks).
"""

from __future__ import annotations

import datetime as _dt
import getpass
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from skiffbox.machine.store import atomic_write

VALIDITY = _dt.timedelta(days=1080)  # docker-machine's lifetime
BACKDATE = _dt.timedelta(minutes=5)  # tolerate guest clock skew
RENEW_BEFORE = _dt.timedelta(days=7)

CA_CERT, CA_KEY, CLIENT_CERT, CLIENT_KEY = "ca.pem", "ca-key.pem", "cert.pem", "key.pem"
SERVER_CERT, SERVER_KEY = "server.pem", "server-key.pem"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return "skiff"


def write_private(path: Path, data: bytes) -> None:
    atomic_write(path, data, 0o600)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _builder(subject: x509.Name, issuer: x509.Name,
             pub: CertificatePublicKeyTypes) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
    )


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def cert_valid(cert_path: Path, ca_cert: Path | None = None) -> bool:
    try:
        cert = _load_cert(cert_path)
        if cert.not_valid_after_utc - RENEW_BEFORE < _now():
            return False
        if ca_cert is not None:
            ca = _load_cert(ca_cert)
            cert.verify_directly_issued_by(ca)
        return True
    except Exception:
        return False


def ensure_ca_and_client(certs_dir: Path, org: str | None = None) -> bool:
    """Make the per-user CA and client cert unless valid ones exist. A new CA means a new client cert
    (and, for machines, new server certs: host.py checks `cert_valid(server, ca)`)."""
    certs_dir = Path(certs_dir)
    certs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    org = org or _user()
    ca_cert, ca_key = certs_dir / CA_CERT, certs_dir / CA_KEY
    made = False
    if not (cert_valid(ca_cert) and ca_key.is_file()):
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"{org} skiff machine CA")])
        cert = (
            _builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=True,
                              crl_sign=True, encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(ca_key, _key_pem(key))
        atomic_write(ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        made = True
    client_cert, client_key = certs_dir / CLIENT_CERT, certs_dir / CLIENT_KEY
    if made or not (cert_valid(client_cert, ca_cert) and client_key.is_file()):
        _issue_leaf(ca_cert, ca_key, client_cert, client_key, org=f"{org}.client", cn=f"{org} client",
                    sans=[], usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        made = True
    return made


def _issue_leaf(ca_cert: Path, ca_key: Path, cert_out: Path, key_out: Path, *, org: str, cn: str,
                sans: list[str], usage: x509.ObjectIdentifier) -> None:
    ca = _load_cert(ca_cert)
    ca_priv = serialization.load_pem_private_key(Path(ca_key).read_bytes(), password=None)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])])
    b = (
        _builder(name, ca.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                          data_encipherment=False, key_agreement=True, key_cert_sign=False,
                          crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False  # type: ignore[arg-type]
        )
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(_general_names(sans)), critical=False)
    cert = b.sign(ca_priv, hashes.SHA256())  # type: ignore[arg-type]
    write_private(key_out, _key_pem(key))
    atomic_write(cert_out, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _general_names(sans: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    seen: set[str] = set()
    for s in sans:
        s = s.strip()
        if not s or s in seen:
            continue
        seen.add(s)
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(s)))
        except ValueError:
            out.append(x509.DNSName(s))
    return out


def issue_server_cert(ca_cert: Path, ca_key: Path, cert_out: Path, key_out: Path, sans: list[str],
                      org: str | None = None) -> None:
    """Issue the engine's server cert. `sans` mixes IPs and DNS names; the first is the CN."""
    names = [s for s in sans if s]
    _issue_leaf(ca_cert, ca_key, cert_out, key_out, org=org or f"{_user()}.machine",
                cn=names[0] if names else "skiff", sans=names, usage=ExtendedKeyUsageOID.SERVER_AUTH)


def server_cert_sans(cert_path: Path) -> list[str]:
    try:
        ext = _load_cert(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (FileNotFoundError, x509.ExtensionNotFound):
        return []
    return [str(v) for v in ext.get_values_for_type(x509.IPAddress)] + list(ext.get_values_for_type(x509.DNSName))


def generate_ssh_key(private_path: Path, comment: str = "skiff-machine") -> str:
    """RSA 2048 in OpenSSH format (the file is named id_rsa, as docker-machine's); returns the pub line."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = f"{pub.decode()} {comment}"
    write_private(Path(private_path), priv)
    atomic_write(Path(str(private_path) + ".pub"), line + "\n", 0o644)
    return line
