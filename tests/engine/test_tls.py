"""Downloads over HTTPS: the socket read path and segments work on TLS sockets too.

The origin serves with a self-signed certificate for 127.0.0.1 kept in tests/data/tls (valid
until 2126); the client trusts it through SSL_CERT_FILE, as an operator's would a private CA.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from dltui.ledger import events
from dltui.model import JobState
from dltui.origin import Origin, Resource
from tests.engine.helpers import blob, fetch_one, sha

MiB = 1 << 20
TLS = Path(__file__).resolve().parents[1] / "data" / "tls"


@pytest.fixture
def tls_origin(monkeypatch):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS / "cert.pem"))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with Origin(tls=context) as origin:
        yield origin


@pytest.mark.parametrize("connections", [1, 4])
def test_large_file_over_https(ledger, dest, tls_origin, settings, connections) -> None:
    data = blob(8 * MiB, seed=70 + connections)
    url = tls_origin.add("/secure.bin", Resource(data=data, drop_after=5 * MiB))
    assert url.startswith("https://")
    job = fetch_one(ledger, dest, settings.replace(trust_env=True, min_segment_size=MiB,
                                                   connections_per_file=connections,
                                                   split_below_rate=0), url)
    assert job.state is JobState.FINALIZED, job.error
    assert job.sha256 == sha(data) and Path(job.final_path).read_bytes() == data
    gets = tls_origin.requests("/secure.bin", "GET")
    assert any("range" in g.headers for g in gets)  # the dropped connection was resumed
    if connections > 1:
        assert len(gets) >= connections


def test_untrusted_certificate_fails_with_a_clear_error(ledger, dest, tls_origin, settings,
                                                        monkeypatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    url = tls_origin.add("/secure.bin", blob(1000))
    job = fetch_one(ledger, dest, settings.replace(trust_env=True, retries=1), url)
    assert job.state is JobState.FAILED
    assert "certificate" in (job.error or "").lower()


def test_a_certificate_failure_is_not_retried(ledger, dest, tls_origin, settings,
                                              monkeypatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    url = tls_origin.add("/secure.bin", blob(1000))
    job = fetch_one(ledger, dest, settings.replace(trust_env=True, retries=5), url)
    assert job.state is JobState.FAILED
    assert job.error.startswith("TLS certificate of 127.0.0.1 not trusted"), job.error
    assert "tries" not in job.error  # failed on its first try
    assert not [e for e in events.for_job(ledger, job.id, 500) if e.kind == "retry"]


@pytest.mark.parametrize("allow", [False, True])
def test_a_redirect_from_https_to_http_is_refused_unless_allowed(ledger, dest, tls_origin,
                                                                 origin, settings,
                                                                 allow) -> None:
    data = blob(20_000, seed=80)
    plain = origin.add("/plain.bin", data)
    url = tls_origin.add("/hop", Resource(redirect=plain))
    job = fetch_one(ledger, dest, settings.replace(trust_env=True, allow_downgrade=allow), url)
    if allow:
        assert job.state is JobState.FINALIZED and Path(job.final_path).read_bytes() == data
        return
    assert job.state is JobState.FAILED
    assert "refused a redirect from https to plain http" in job.error
    assert "allow_downgrade" in job.error
    assert origin.requests("/plain.bin", "GET") == []  # not one byte over plain http


def test_cert_file_and_cert_dir_are_both_honoured(ledger, dest, tls_origin, settings,
                                                  monkeypatch) -> None:
    import certifi

    # The file holds public CAs only; the origin's CA is in the directory (hashed name, as
    # `openssl rehash` makes it). OpenSSL and curl search both.
    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    monkeypatch.setenv("SSL_CERT_DIR", str(TLS / "capath"))
    data = blob(20_000, seed=81)
    url = tls_origin.add("/both.bin", data)
    job = fetch_one(ledger, dest, settings.replace(trust_env=True), url)
    assert job.state is JobState.FINALIZED, job.error


def test_ca_bundle_setting_wins_over_the_environment(ledger, dest, tls_origin, settings,
                                                     monkeypatch) -> None:
    import certifi

    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    url = tls_origin.add("/bundle.bin", blob(20_000, seed=82))
    job = fetch_one(ledger, dest, settings.replace(trust_env=True,
                                                   ca_bundle=str(TLS / "cert.pem")), url)
    assert job.state is JobState.FINALIZED, job.error


def test_an_unreadable_ca_file_fails_at_once_naming_it(ledger, dest, tls_origin, settings,
                                                       tmp_path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    url = tls_origin.add("/ca.bin", blob(20_000, seed=83))
    job = fetch_one(ledger, dest, settings.replace(trust_env=True, retries=5,
                                                   ca_bundle=str(missing)), url)
    assert job.state is JobState.FAILED
    assert str(missing) in job.error and "127.0.0.1" not in job.error, job.error
    assert job.failed_tries == 1
    assert not [e for e in events.for_job(ledger, job.id, 500) if e.kind == "retry"]


def test_insecure_skips_verification(ledger, dest, tls_origin, settings, monkeypatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    data = blob(20_000, seed=84)
    url = tls_origin.add("/insecure.bin", data)
    job = fetch_one(ledger, dest, settings.replace(trust_env=True, insecure=True), url)
    assert job.state is JobState.FINALIZED and Path(job.final_path).read_bytes() == data


def test_an_unreachable_proxy_is_named(ledger, dest, origin, settings, monkeypatch) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy = f"http://user:hunter2@127.0.0.1:{port}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    url = origin.add("/via-proxy.bin", blob(1000))
    job = fetch_one(ledger, dest, settings.replace(trust_env=True, retries=1), url)
    assert job.state is JobState.FAILED
    assert f"cannot connect to proxy http://***@127.0.0.1:{port}" in job.error, job.error
    assert "hunter2" not in job.error


def test_an_https_proxy_for_an_https_url_fails_once_saying_why(ledger, dest, tls_origin,
                                                               settings, monkeypatch) -> None:
    """TLS inside TLS (an https:// proxy tunnelling to an https:// URL): the proxy answers
    CONNECT, and the second handshake is refused in one line, on the first try, never
    retried as if the host were down."""
    import socket
    import threading

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    connects: list[bytes] = []

    def proxy() -> None:
        while True:
            try:
                raw, _ = server.accept()
            except OSError:
                return
            try:
                conn = context.wrap_socket(raw, server_side=True)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                connects.append(head.split(b"\r\n", 1)[0])
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                conn.recv(4096)  # the client's hello, never answered: it gives up first
                conn.close()
            except OSError:
                raw.close()

    threading.Thread(target=proxy, daemon=True).start()
    monkeypatch.setenv("HTTPS_PROXY", f"https://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "")
    try:
        url = tls_origin.add("/tunnel.bin", blob(1000))
        job = fetch_one(ledger, dest, settings.replace(trust_env=True, retries=5), url)
    finally:
        server.close()
    assert connects and connects[0].startswith(b"CONNECT 127.0.0.1:")
    assert job.state is JobState.FAILED and job.failed_tries == 1, job.error
    assert job.error.startswith("TLS inside TLS (an https:// proxy for an https:// URL) is "
                                "not supported"), job.error
