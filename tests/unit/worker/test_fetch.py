"""The SSRF-safe fetcher against a real local HTTP server (names resolved by an injected resolver)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ipaddress
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from worker.failures import (
    BadInput,
    ConfigurationError,
    FetchTimeout,
    ForbiddenAddress,
    HostNotFound,
    HttpError,
    ResponseTooLarge,
    TooManyRedirects,
    UrlNotAllowed,
)
from worker.settings import FetchSettings
from worker.stages.address_policy import IPAddress
from worker.stages.fetch import BackgroundFetcher, ImageFetcher, redact_url, system_resolver

BODY = b"\xff\xd8\xff" + b"x" * 1000


class Handler(BaseHTTPRequestHandler):
    calls: ClassVar[dict[str, int]] = {}
    hosts: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Handler.calls[self.path] = Handler.calls.get(self.path, 0) + 1
        Handler.hosts.append(self.headers.get("Host", ""))
        if self.path == "/ok":
            self._send(200, BODY)
        elif self.path == "/redirect":
            self._redirect("/ok")
        elif self.path == "/redirect-loop":
            self._redirect("/redirect-loop")
        elif self.path == "/redirect-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif self.path == "/big":
            # No Content-Length: the cap must be enforced while streaming.
            self.send_response(200)
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"y" * 65536)
        elif self.path == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(50 * 1024 * 1024))
            self.end_headers()
        elif self.path == "/gzip-bomb":
            payload = gzip.compress(b"\x00" * (8 * 1024 * 1024))
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        elif self.path == "/slow":
            time.sleep(1.5)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                self._send(200, BODY)
        elif self.path == "/flaky":
            if Handler.calls[self.path] == 1:
                self._send(503, b"busy")
            else:
                self._send(200, BODY)
        elif self.path == "/always-500":
            self._send(500, b"broken")
        else:
            self._send(404, b"nope")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def resolver_for(table: dict[str, list[str]]) -> Any:
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[IPAddress]:
        del port
        calls.append(host)
        if host not in table:
            raise HostNotFound(f"cannot resolve {host}")
        return [ipaddress.ip_address(a) for a in table[host]]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def settings(**overrides: Any) -> FetchSettings:
    base: dict[str, Any] = {
        "allow_private_networks": True,
        "connect_timeout_s": 1.0,
        "read_timeout_s": 0.5,
        "total_timeout_s": 3.0,
        "max_attempts": 2,
        "backoff_base_s": 0.01,
        "max_bytes": 1024 * 1024,
    }
    return FetchSettings(**{**base, **overrides})


def fetch(url: str, config: FetchSettings, resolver: Any = None) -> bytes:
    async def go() -> bytes:
        fetcher = ImageFetcher(config, resolver=resolver or resolver_for({}))
        try:
            return await fetcher.fetch(url)
        finally:
            await fetcher.aclose()

    return asyncio.run(go())


def test_fetches_and_pins_the_checked_address_with_the_original_host_header(server: str) -> None:
    port = server.split(":")[1]
    resolver = resolver_for({"images.example": ["127.0.0.1"]})
    Handler.hosts.clear()
    assert fetch(f"http://images.example:{port}/ok", settings(), resolver) == BODY
    assert resolver.calls == ["images.example"]  # resolved once, by us
    assert Handler.hosts == [f"images.example:{port}"]  # connected to the IP, named the host


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        (["127.0.0.1"], "loopback"),
        (["10.1.2.3"], "private"),
        (["93.184.216.34", "192.168.0.10"], "private"),  # one bad answer among good ones is enough
        (["169.254.169.254"], "link-local"),
        (["::ffff:127.0.0.1"], "loopback"),
        (["100.64.0.1"], "100.64.0.0/10"),
        (["fd12::1"], "private"),
    ],
)
def test_refuses_non_public_addresses(answers: list[str], reason: str) -> None:
    resolver = resolver_for({"evil.example": answers})
    with pytest.raises(ForbiddenAddress, match=reason):
        fetch("http://evil.example/x.jpg", settings(allow_private_networks=False), resolver)


def test_refuses_ip_literals_in_private_ranges() -> None:
    with pytest.raises(ForbiddenAddress):
        fetch("http://127.0.0.1:1/x.jpg", settings(allow_private_networks=False))
    with pytest.raises(ForbiddenAddress):
        fetch("http://[::1]:1/x.jpg", settings(allow_private_networks=False))


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0x7f000001"])
def test_legacy_numeric_hosts_cannot_reach_loopback(host: str) -> None:
    # socket maps these onto 127.0.0.1; they must be refused whichever layer recognises them.
    with pytest.raises((ForbiddenAddress, UrlNotAllowed)):
        fetch(f"http://{host}:1/x.jpg", settings(allow_private_networks=False), system_resolver)


def test_metadata_addresses_stay_refused_when_private_networks_are_allowed() -> None:
    with pytest.raises(ForbiddenAddress, match="metadata"):
        fetch("http://169.254.169.254/latest/meta-data/", settings(allow_private_networks=True))


def test_redirects_are_followed_and_rechecked(server: str) -> None:
    assert fetch(f"http://{server}/redirect", settings()) == BODY
    with pytest.raises(ForbiddenAddress):
        fetch(f"http://{server}/redirect-metadata", settings())
    with pytest.raises(TooManyRedirects):
        fetch(f"http://{server}/redirect-loop", settings(max_redirects=2))


@pytest.mark.parametrize("path", ["/big", "/big-declared", "/gzip-bomb"])
def test_the_byte_cap_holds_whatever_the_headers_say(server: str, path: str) -> None:
    with pytest.raises(ResponseTooLarge):
        fetch(f"http://{server}{path}", settings(max_bytes=1024 * 1024))


def test_slow_servers_time_out(server: str) -> None:
    with pytest.raises(FetchTimeout):
        fetch(f"http://{server}/slow", settings(read_timeout_s=0.3, max_attempts=1))


def test_transient_failures_are_retried(server: str) -> None:
    Handler.calls.pop("/flaky", None)
    assert fetch(f"http://{server}/flaky", settings()) == BODY
    assert Handler.calls["/flaky"] == 2
    Handler.calls.pop("/always-500", None)
    with pytest.raises(HttpError, match="500"):
        fetch(f"http://{server}/always-500", settings(max_attempts=3))
    assert Handler.calls["/always-500"] == 3


def test_client_errors_are_not_retried(server: str) -> None:
    Handler.calls.pop("/nothing-here", None)
    with pytest.raises(HttpError, match="404"):
        fetch(f"http://{server}/nothing-here", settings(max_attempts=3))
    assert Handler.calls["/nothing-here"] == 1


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "http://user:secret@example.com/a.jpg",
        "not a url",
        "gopher://x",
    ],
)
def test_only_plain_http_urls_are_allowed(url: str) -> None:
    with pytest.raises(UrlNotAllowed):
        fetch(url, settings())


def test_the_host_allow_list(server: str) -> None:
    port = server.split(":")[1]
    resolver = resolver_for({"cdn.shop.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    config = settings(allowed_hosts=(".shop.example",))
    assert fetch(f"http://cdn.shop.example:{port}/ok", config, resolver) == BODY
    with pytest.raises(UrlNotAllowed):
        fetch(f"http://other.example:{port}/ok", config, resolver)


def test_unknown_hosts() -> None:
    with pytest.raises(HostNotFound):
        fetch("http://nowhere.example/a.jpg", settings())


def test_file_urls_only_below_their_root(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(BODY)
    config = settings(allow_file_urls=True, file_root=tmp_path)
    assert fetch(f"file://{tmp_path}/a.jpg", config) == BODY
    with pytest.raises(UrlNotAllowed):
        fetch("file:///etc/hostname", config)
    with pytest.raises(ConfigurationError):
        ImageFetcher(settings(allow_file_urls=True))


def test_background_fetcher_returns_futures(server: str) -> None:
    fetcher = BackgroundFetcher(settings())
    try:
        ok = fetcher.submit(f"http://{server}/ok")
        missing = fetcher.submit(f"http://{server}/missing")
        assert ok.result(5) == BODY
        with pytest.raises(BadInput):
            missing.result(5)
    finally:
        fetcher.close()


def test_redacted_urls_carry_no_credentials_or_query() -> None:
    redacted = redact_url("https://user:pw@img.example.com:8443/a/b.jpg?token=secret#frag")
    assert redacted == "https://img.example.com:8443/a/b.jpg"
