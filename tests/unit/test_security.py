import socket
import ssl
import stat
import string
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wr.errors import ConfigError
from wr.security import (
    certificate_expiry,
    certificate_names,
    client_ssl_context,
    ensure_certificates,
    generate_token,
    load_or_create_token,
    name_matches,
    server_ssl_context,
    tokens_match,
)

ALPHABET = set(string.ascii_letters + string.digits + "-_")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_token():
    tokens = {generate_token() for _ in range(20)}
    assert len(tokens) == 20
    for token in tokens:
        assert len(token) == 43
        assert set(token) <= ALPHABET


def test_token_created_reused_and_private(tmp_path):
    path = tmp_path / "dir" / "client.token"
    token, reused = load_or_create_token(path)
    assert not reused
    assert path.read_text() == token and len(token) == 43
    assert mode(path) == 0o600
    path.chmod(0o644)
    again, reused = load_or_create_token(path)
    assert (again, reused) == (token, True)
    assert mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["client.token"]  # no temp files left


def test_token_with_trailing_newline_is_reused(tmp_path):
    path = tmp_path / "client.token"
    token = generate_token()
    path.write_text(token + "\n")
    assert load_or_create_token(path) == (token, True)
    assert path.read_text() == token


@pytest.mark.parametrize(
    "content",
    [b"short", b"x" * 44, b"!" * 43, b"\xff" * 43, b"", ("a" * 42 + "\u00e9").encode()],
)
def test_bad_token_file_is_replaced(tmp_path, content):
    path = tmp_path / "client.token"
    path.write_bytes(content)
    token, reused = load_or_create_token(path)
    assert not reused
    assert path.read_text() == token and len(token) == 43 and set(token) <= ALPHABET
    assert mode(path) == 0o600


def test_tokens_match():
    token = generate_token()
    assert tokens_match(token, token)
    assert not tokens_match(token[:-1], token)
    assert not tokens_match("", token)
    assert not tokens_match("\u00e9\u4e2d" * 10, token)
    assert not tokens_match("\udcff", token)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """One generated set (RSA generation is slow), shared read-only by the tests below."""
    directory = tmp_path_factory.mktemp("certs")
    ca, cert, key = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    assert ensure_certificates(ca, cert, key, "localhost") is True
    return ca, cert, key


def test_certificate_files(certs):
    ca_file, cert_file, key_file = certs
    assert mode(key_file) == 0o600
    assert mode(ca_file) == mode(cert_file) == 0o644
    assert key_file.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    for c in (ca, cert):
        assert c.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "wr manager"
        assert c.public_key().key_size == 2048
        assert c.signature_hash_algorithm.name == "sha256"
        assert c.not_valid_after_utc - c.not_valid_before_utc >= timedelta(days=365)
        eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert ca.serial_number != cert.serial_number
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1", "0.0.0.0", "::1",
    }
    assert certificate_expiry([ca_file, cert_file]) == min(
        ca.not_valid_after_utc, cert.not_valid_after_utc
    )


def test_existing_certificates_are_kept(certs):
    before = [p.read_bytes() for p in certs]
    assert ensure_certificates(*certs, "localhost") is False
    assert [p.read_bytes() for p in certs] == before


def test_ip_domain_goes_in_an_ip_san(tmp_path):
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ensure_certificates(ca, cert, key, "10.1.2.3")
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.1.2.3" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def test_a_kept_certificate_must_name_the_cert_domain(certs):
    """Issue 16: a certificate made for localhost, kept once managercertdomain names the
    head node, would fail every runner's TLS check on the other nodes; the manager refuses
    to start instead, saying what to do (nothing is touched)."""
    before = [p.read_bytes() for p in certs]
    with pytest.raises(ConfigError) as info:
        ensure_certificates(*certs, "198.18.0.1")
    assert info.value.message == (
        f"{certs[1]} is for localhost, 127.0.0.1, 0.0.0.0, ::1, not for managercertdomain "
        f"'198.18.0.1', which clients and runners verify; delete ca.pem, cert.pem and "
        f"key.pem to make new ones for it, or set managercertdomain to a name the "
        f"certificate has")
    assert [p.read_bytes() for p in certs] == before
    assert ensure_certificates(*certs, "127.0.0.1") is False  # an address it has


def test_a_certificate_for_an_ip_address_passes_tls_for_that_address(tmp_path):
    """Runners on other nodes connect to the head's address and check it: an IP SAN."""
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ensure_certificates(*paths, "198.18.0.1")
    assert certificate_names(paths[1])[0] == "198.18.0.1"
    assert ensure_certificates(*paths, "198.18.0.1") is False
    got = handshake(server_ssl_context(paths[1], paths[2]), client_ssl_context(paths[0]),
                    server_hostname="198.18.0.1")
    assert got == b"hello"
    with pytest.raises(ssl.SSLCertVerificationError, match="198.18.0.2"):
        handshake(server_ssl_context(paths[1], paths[2]), client_ssl_context(paths[0]),
                  server_hostname="198.18.0.2")


@pytest.mark.parametrize(("domain", "names", "matches"), [
    ("localhost", ["localhost", "127.0.0.1"], True),
    ("Head.Example.org", ["head.example.org"], True),
    ("head.example.org", ["*.example.org"], True),
    ("example.org", ["*.example.org"], False),
    ("a.b.example.org", ["*.example.org"], False),
    ("198.18.0.1", ["198.18.0.1"], True),
    ("198.18.0.1", ["localhost", "198.18.0.2"], False),
    ("::1", ["0:0:0:0:0:0:0:1"], True),
    ("127.0.0.1", ["localhost"], False),
    ("localhost", [], False),
])
def test_name_matches(domain, names, matches):
    assert name_matches(domain, names) is matches


@pytest.mark.parametrize("present", ["ca.pem", "cert.pem", "key.pem"])
def test_partial_set_is_refused(tmp_path, present):
    (tmp_path / present).write_text("left over")
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    with pytest.raises(ConfigError) as info:
        ensure_certificates(*paths, "localhost")
    assert info.value.message == (
        f"{tmp_path / present} already exists; delete ca.pem, cert.pem and key.pem to make new ones"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [present]


def test_expired_certificate_is_refused(tmp_path):
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    long_ago = datetime.now(UTC) - timedelta(days=400)
    assert ensure_certificates(*paths, "localhost", now=long_ago)
    with pytest.raises(ConfigError, match=f"^{paths[0]} cert expired$"):
        ensure_certificates(*paths, "localhost")
    assert certificate_expiry(paths[:2]) < datetime.now(UTC)


def test_certificate_expiry_of_a_bad_file(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate")
    with pytest.raises(ConfigError, match="not a readable PEM certificate"):
        certificate_expiry([path])


def handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext,
              server_hostname: str = "localhost") -> bytes:
    """Connect over loopback, checking ``server_hostname``; return what the server sent."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        errors: list[Exception] = []

        def serve() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"hello")
            except (ssl.SSLError, OSError) as exc:
                errors.append(exc)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client_context.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
                return tls.recv(5)
        finally:
            thread.join(timeout=10)


def test_tls_handshake_succeeds_with_the_managers_ca(certs):
    ca, cert, key = certs
    assert handshake(server_ssl_context(cert, key), client_ssl_context(ca)) == b"hello"


def test_tls_handshake_fails_with_another_ca(certs, tmp_path):
    other = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ensure_certificates(*other, "localhost")
    _, cert, key = certs
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_ssl_context(cert, key), client_ssl_context(other[0]))


def test_tls_handshake_fails_for_another_hostname(certs, tmp_path):
    ca = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ensure_certificates(*ca, "manager.example")
    with pytest.raises(ssl.SSLCertVerificationError, match="localhost"):
        handshake(server_ssl_context(ca[1], ca[2]), client_ssl_context(ca[0]))


def test_contexts_refuse_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="CA certificate"):
        client_ssl_context(tmp_path / "ca.pem")
    with pytest.raises(ConfigError):
        server_ssl_context(tmp_path / "cert.pem", tmp_path / "key.pem")


def test_contexts_require_tls_1_2(certs):
    ca, cert, key = certs
    client = client_ssl_context(ca)
    assert client.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    assert server_ssl_context(cert, key).minimum_version == ssl.TLSVersion.TLSv1_2
