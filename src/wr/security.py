"""The manager's secrets: the access token and the TLS certificates clients trust (spec §2.6-2.7).

Everything the manager serves is HTTPS with a bearer token. The token is reused across
restarts when its file is intact, so runners that outlive a manager crash can report back to
the next one. The certificates come from a private CA whose key is thrown away once the
server certificate is signed: nothing else can ever be signed with it, and clients trust
only `ca.pem`, not the system roots.

`cryptography` is imported only where certificates are made or read, so clients, which need
only `ssl`, start quickly.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import secrets
import ssl
import string
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from wr.errors import ConfigError

TOKEN_LENGTH = 43
"""Characters in a token: 32 random bytes in URL-safe base64 without padding."""

_TOKEN_ALPHABET = frozenset(string.ascii_letters + string.digits + "-_")

CERT_VALIDITY = timedelta(days=365)
"""How long generated certificates last; the manager shuts down when they expire."""

_CLOCK_SKEW = timedelta(minutes=5)
"""Generated certificates start this long before now, so hosts with slightly slow clocks
(runners elsewhere) do not reject a brand-new certificate."""


def generate_token() -> str:
    """A new random token: 32 bytes from the OS CSPRNG, URL-safe base64, 43 characters."""
    return secrets.token_urlsafe(32)


def load_or_create_token(path: Path) -> tuple[str, bool]:
    """Reuse the token in `path` if it is intact, else make one; returns (token, reused).

    The file is always rewritten (atomically, mode 0600) so its mtime tells a waiting
    `wr manager start` that the manager is up, and its permissions are repaired if loosened.
    """
    path = Path(path)
    token, reused = generate_token(), False
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        existing = path.read_bytes().decode("ascii", errors="replace").removesuffix("\n")
        if len(existing) == TOKEN_LENGTH and set(existing) <= _TOKEN_ALPHABET:
            token, reused = existing, True
    write_private(path, token.encode("ascii"), 0o600)
    return token, reused


def tokens_match(candidate: str, token: str) -> bool:
    """Compare in constant time; any string (even with lone surrogates) is safe to pass."""
    return hmac.compare_digest(
        candidate.encode("utf-8", errors="surrogatepass"),
        token.encode("utf-8", errors="surrogatepass"),
    )


def ensure_certificates(
    ca_file: Path, cert_file: Path, key_file: Path, domain: str, *, now: datetime | None = None
) -> bool:
    """Make a CA, server certificate and key unless the certificate and key exist.

    Returns True when new files were written. Raises ConfigError if only some of the three
    files exist (so a half-set is never silently overwritten), if an existing CA or
    server certificate has expired, or if an existing server certificate does not name
    `domain` (clients, and runners on other hosts, verify that name: issue 16). `now` is
    for tests; it defaults to the current time.
    """
    ca_file, cert_file, key_file = Path(ca_file), Path(cert_file), Path(key_file)
    now = now or datetime.now(UTC)
    if cert_file.exists() and key_file.exists():
        for path in (ca_file, cert_file):
            if path.exists() and certificate_expiry([path]) <= now:
                raise ConfigError(f"{path} cert expired")
        names = certificate_names(cert_file)
        if not name_matches(domain, names):
            raise ConfigError(
                f"{cert_file} is for {', '.join(names) or 'no name'}, not for "
                f"managercertdomain '{domain}', which clients and runners verify; delete "
                f"{ca_file.name}, {cert_file.name} and {key_file.name} to make new ones for "
                f"it, or set managercertdomain to a name the certificate has")
        return False
    for path in (ca_file, cert_file, key_file):
        if path.exists():
            raise ConfigError(
                f"{path} already exists; delete {ca_file.name}, {cert_file.name} and "
                f"{key_file.name} to make new ones"
            )
    ca_pem, cert_pem, key_pem = _make_certificates(domain, now)
    write_private(key_file, key_pem, 0o600)
    write_private(ca_file, ca_pem, 0o644)
    write_private(cert_file, cert_pem, 0o644)
    return True


def certificate_expiry(paths: Iterable[Path]) -> datetime:
    """The earliest expiry (UTC) among the PEM certificates in `paths`."""
    from cryptography import x509

    expiries = []
    for path in paths:
        try:
            certificate = x509.load_pem_x509_certificate(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is not a readable PEM certificate: {exc}") from None
        expiries.append(certificate.not_valid_after_utc)
    if not expiries:
        raise ValueError("certificate_expiry needs at least one path")
    return min(expiries)


def certificate_names(path: Path) -> list[str]:
    """The DNS names and IP addresses a PEM certificate is for (its subject alternative
    names: what TLS clients check, as Python's ssl module ignores the subject's CN)."""
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not a readable PEM certificate: {exc}") from None
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    dns = san.value.get_values_for_type(x509.DNSName)
    return [*dns, *(str(ip) for ip in san.value.get_values_for_type(x509.IPAddress))]


def name_matches(domain: str, names: Iterable[str]) -> bool:
    """Whether a certificate for ``names`` passes a TLS client's check of ``domain``: an IP
    address must be one of them; a DNS name must equal one (case aside) or match a
    wildcard in its leftmost label (``*.example.org``)."""
    try:
        address = ipaddress.ip_address(domain)
    except ValueError:
        address = None
    wanted = domain.lower().rstrip(".")
    for name in names:
        if address is not None:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(name) == address:
                    return True
            continue
        name = name.lower().rstrip(".")
        if name == wanted:
            return True
        head, _, rest = name.partition(".")
        if head == "*" and rest and wanted.partition(".")[2] == rest and "." in wanted:
            return True
    return False


def server_ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS 1.2+ context for the manager's listening sockets."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"Cannot load {cert_file} and {key_file}: {exc}") from None
    return context


def client_ssl_context(ca_file: Path) -> ssl.SSLContext:
    """TLS 1.2+ client context trusting only the manager's CA, with hostname checking.

    Connect with `server_hostname` set to the config's `cert_domain`.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"Cannot load the manager's CA certificate {ca_file}: {exc}") from None
    return context


def _make_certificates(domain: str, now: datetime) -> tuple[bytes, bytes, bytes]:
    """PEM bytes of (CA certificate, server certificate, server key), as wr makes them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wr manager")])
    try:
        domain_entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(domain))
    except ValueError:
        domain_entry = x509.DNSName(domain)
    addresses = ("127.0.0.1", "0.0.0.0", "::1")
    san = x509.SubjectAlternativeName(
        [domain_entry, *(x509.IPAddress(ipaddress.ip_address(a)) for a in addresses)]
    )

    def build(public_key: rsa.RSAPublicKey, is_ca: bool) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public_key)
            .serial_number(secrets.randbits(127) | 1 << 126)  # random, positive, 128-bit field
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + CERT_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_encipherment=True, key_cert_sign=is_ca,
                    content_commitment=False, data_encipherment=False, key_agreement=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(san, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
        )

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = build(ca_key.public_key(), is_ca=True).sign(ca_key, hashes.SHA256())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        build(key.public_key(), is_ca=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # "RSA PRIVATE KEY", as wr writes
        serialization.NoEncryption(),
    )
    encoding = serialization.Encoding.PEM
    return ca_cert.public_bytes(encoding), cert.public_bytes(encoding), key_pem


def write_private(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` atomically with exactly `mode`, whatever the umask.

    The bytes go to a temporary file in the same directory, created with `mode` (so they are
    never readable by others, even briefly) and then renamed over `path`.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
