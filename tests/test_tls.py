"""HTTPS without a proxy: a real `glimpze serve --tls-cert --tls-key` speaks TLS 1.2 and 1.3 only,
and sends HSTS only when `[tls] hsts = true`."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.server import UNLIMITED_PLAN, Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = root / "fullchain.pem", root / "privkey.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key.write_bytes(cert.private_key_pem.bytes())
    return chain, key


def client_context(ca: trustme.CA, *, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A verifying client; with `version`, it offers that TLS version and no other."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    if version is not None:
        if version < ssl.TLSVersion.TLSv1_2:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 hides TLS < 1.2 below level 0
        with warnings.catch_warnings():  # the deprecated versions are the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = context.maximum_version = version
    return context


def handshake(port: int, context: ssl.SSLContext) -> str:
    """The TLS version a real handshake with 127.0.0.1:port settled on (raises ssl.SSLError if refused)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version() or ""


@pytest.fixture
def tls_server(tmp_path: Path, ca: trustme.CA, cert_files: tuple[Path, Path]) -> Iterator[Server]:
    chain, key = cert_files
    server = Server(
        tmp_path,
        UNLIMITED_PLAN,
        args=["--tls-cert", str(chain), "--tls-key", str(key)],
        scheme="https",
        verify=client_context(ca),
    )
    server.start()
    yield server
    server.kill()


@pytest.fixture
def tls11_capable_client(ca: trustme.CA, tmp_path: Path, cert_files: tuple[Path, Path]) -> ssl.SSLContext:
    """A client that offers TLS 1.1 only, shown to complete a TLS 1.1 handshake with a server that
    allows it: so when Glimpze refuses it, the refusal is Glimpze's, not the client's."""
    chain, key = cert_files
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        permissive.minimum_version = ssl.TLSVersion.TLSv1_1
    permissive.load_cert_chain(chain, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept_one() -> None:
        conn, _ = listener.accept()
        try:
            with permissive.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=accept_one, daemon=True)
    thread.start()
    client = client_context(ca, version=ssl.TLSVersion.TLSv1_1)
    try:
        agreed = handshake(port, client)
    except ssl.SSLError as exc:
        pytest.skip(f"this OpenSSL cannot speak TLS 1.1 at all ({exc}), so the refusal test proves nothing")
    finally:
        thread.join(5)
        listener.close()
    assert agreed == "TLSv1.1"
    return client


def test_tls_1_2_and_1_3_are_served_and_1_1_is_refused(
    tls_server: Server, ca: trustme.CA, tls11_capable_client: ssl.SSLContext
) -> None:
    assert handshake(tls_server.port, client_context(ca, version=ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    assert handshake(tls_server.port, client_context(ca, version=ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        handshake(tls_server.port, tls11_capable_client)

    response = httpx.get(f"{tls_server.url}/healthz", verify=client_context(ca))
    assert response.status_code == 200
    assert response.http_version == "HTTP/1.1"
    assert "strict-transport-security" not in response.headers  # HSTS is opt-in
    assert "https://127.0.0.1" in tls_server.output()
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets nowhere
        httpx.get(f"http://127.0.0.1:{tls_server.port}/healthz", timeout=2)


def test_hsts_from_glimpze_toml(tmp_path: Path, ca: trustme.CA, cert_files: tuple[Path, Path]) -> None:
    chain, key = cert_files
    toml = UNLIMITED_PLAN + f'\n[tls]\ncert = "{chain}"\nkey = "{key}"\nhsts = true\n'
    server = Server(tmp_path, toml, scheme="https", verify=client_context(ca))
    server.start()
    try:
        admin = {"Authorization": f"Bearer {server.admin_key()}"}
        with httpx.Client(base_url=server.url, verify=client_context(ca)) as client:
            assert client.get("/healthz").headers["strict-transport-security"] == "max-age=31536000"
            feed = client.post("/v1/feeds", json={"name": "tls", "schema_type": "counter"}, headers=admin)
            assert feed.headers["strict-transport-security"] == "max-age=31536000"
            # without public_url, the URLs Glimpze hands out are https too
            assert feed.json()["webhook_url"].startswith("https://localhost:")
            ingest = client.post(
                f"/ingest/{feed.json()['id']}",
                json={"schema_type": "counter", "content": {"title": "t", "count": 1}},
                headers={"Authorization": f"Bearer {feed.json()['write_key']}"},
            )
            assert ingest.status_code == 202 and "strict-transport-security" in ingest.headers
    finally:
        server.kill()


def test_a_key_that_does_not_match_the_certificate_is_a_configuration_error(
    tmp_path: Path, ca: trustme.CA, cert_files: tuple[Path, Path]
) -> None:
    chain, _ = cert_files
    other_key = tmp_path / "other.pem"
    other_key.write_bytes(ca.issue_cert("example.org").private_key_pem.bytes())
    server = Server(tmp_path, UNLIMITED_PLAN, args=["--tls-cert", str(chain), "--tls-key", str(other_key)])
    with pytest.raises(RuntimeError, match="exited with 2"):
        server.start()
    assert "tls.cert/tls.key" in server.output() and "not a matching" in server.output()
