"""SSRF-safe image downloads on a pooled async HTTP client.

Design: one asyncio event loop runs in a background thread and owns one `httpx.AsyncClient`
(`BackgroundFetcher`). The main loop submits URLs and gets `concurrent.futures.Future`s back. Why not a
thread pool of blocking clients: a download is almost all waiting, so one thread can keep many of them
in flight (bounded by a semaphore) sharing one keep-alive connection pool, without one OS thread and one
stack per slow server; the decode stage, which does use CPU, gets its own thread pool.

Safety, per request (`ImageFetcher.fetch`):
1. only http/https (file:// below a root when enabled), no credentials in the URL, optional host
   allow-list;
2. the host is resolved here and EVERY address is checked (`worker.netguard`) unless private networks
   are allowed;
3. the connection goes to the checked address (the URL's host is replaced by the IP) while the original
   name is sent as the Host header and as TLS SNI, and the certificate is verified against that name;
   so a second DNS answer cannot redirect the connection (DNS rebinding);
4. redirects are followed by hand, each hop going through steps 1-3 again;
5. the body is streamed and cut at `max_bytes` whatever Content-Length says; connect/read timeouts per
   request and a total deadline per image; no proxies from the environment (they would bypass 2-3).
Timeouts, connection errors, 429 and 5xx are retried with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import unquote

import httpx

from worker.errors import (
    BadInput,
    ConfigurationError,
    ConnectionFailed,
    FetchTimeout,
    HostNotFound,
    HttpError,
    ResponseTooLarge,
    TooManyRedirects,
    TransientFetchError,
    UrlNotAllowed,
)
from worker.netguard import AddressPolicy, HostPolicy, IPAddress, parse_ip
from worker.settings import FetchSettings

Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Connections per httpx pool (see `ImageFetcher.__init__`).
_CONNECTIONS_PER_POOL = 2


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment, safe to log."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<unparseable url>"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Resolve `host` with the system resolver (all A and AAAA answers)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise HostNotFound(f"cannot resolve host {host!r}: {exc.strerror}") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = parse_ip(str(sockaddr[0]).split("%", 1)[0])
        if address is not None and address not in addresses:
            addresses.append(address)
    if not addresses:
        raise HostNotFound(f"host {host!r} has no addresses")
    return addresses


class ImageFetcher:
    """Downloads one image's bytes safely; must be used from one asyncio event loop."""

    def __init__(
        self,
        settings: FetchSettings,
        *,
        resolver: Resolver = system_resolver,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Create the fetcher.

        Args:
            settings: limits, timeouts and policies.
            resolver: host name -> addresses (injectable for tests).
            transport: an httpx transport (tests); default is a pooled HTTP/1.1 transport.
        """
        if settings.allow_file_urls and settings.file_root is None:
            raise ConfigurationError("allow_file_urls needs file_root")
        self._settings = settings
        self._resolver = resolver
        self._addresses = AddressPolicy(settings.allow_private_networks)
        self._hosts = HostPolicy(settings.allowed_hosts)
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.read_timeout_s,
            pool=settings.total_timeout_s,
        )
        # Several small pools instead of one big one: httpx's pool checks every idle connection (a socket
        # poll and a peer-name lookup each) whenever a request starts or ends, so one pool's cost per
        # request grows with its size; at 32 connections that check took half of the fetch thread.
        shards = 1 if transport is not None else -(-settings.concurrency // _CONNECTIONS_PER_POOL)
        per_pool = -(-settings.concurrency // shards)
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        # One TLS context for all pools (loading the CA bundle is slow), with the default verification.
        tls = httpx.create_ssl_context(trust_env=False)
        self._clients = [
            httpx.AsyncClient(
                timeout=timeout,
                limits=limits,
                follow_redirects=False,  # redirects are re-checked by hand
                trust_env=False,  # an environment proxy would bypass address pinning
                transport=transport,
                verify=tls,
                headers={"User-Agent": settings.user_agent, "Accept": "image/*"},
            )
            for _ in range(shards)
        ]
        self._busy = [0] * shards  # requests in progress per pool; a request takes the least busy one

    async def aclose(self) -> None:
        """Close the connection pools."""
        for client in self._clients:
            await client.aclose()

    async def fetch(self, url: str) -> bytes:
        """Download `url`, retrying transient failures, within the total deadline.

        Raises:
            BadInput: a subclass naming the reason (UrlNotAllowed, ForbiddenAddress, HttpError, ...).
        """
        settings = self._settings
        deadline = time.monotonic() + settings.total_timeout_s
        attempt = 0
        async with self._semaphore:
            while True:
                attempt += 1
                try:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise FetchTimeout(f"no answer within {settings.total_timeout_s:g}s")
                    try:
                        async with asyncio.timeout(remaining):
                            return await self._fetch_once(url)
                    except TimeoutError as exc:
                        raise FetchTimeout(f"no answer within {settings.total_timeout_s:g}s") from exc
                except TransientFetchError as exc:
                    delay = settings.backoff_base_s * (2 ** (attempt - 1)) * (0.5 + random.random())
                    if attempt >= settings.max_attempts or time.monotonic() + delay >= deadline:
                        raise exc.final from exc
                    await asyncio.sleep(delay)

    async def _fetch_once(self, url: str) -> bytes:
        current = self._parse(url)
        for _hop in range(self._settings.max_redirects + 1):
            if current.scheme == "file":
                return await asyncio.to_thread(self._read_file, current)
            response_or_bytes = await self._request(current)
            if isinstance(response_or_bytes, bytes):
                return response_or_bytes
            current = self._parse(str(current.join(response_or_bytes)))
        raise TooManyRedirects(f"more than {self._settings.max_redirects} redirects")

    def _parse(self, url: str) -> httpx.URL:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise UrlNotAllowed(f"not a valid URL: {exc}") from exc
        allowed_schemes = {"http", "https"} | ({"file"} if self._settings.allow_file_urls else set())
        if parsed.scheme not in allowed_schemes:
            raise UrlNotAllowed(f"scheme {parsed.scheme!r} is not allowed")
        if parsed.scheme == "file":
            return parsed
        if parsed.userinfo:
            raise UrlNotAllowed("credentials in image URLs are not allowed")
        if not parsed.host:
            raise UrlNotAllowed("URL has no host")
        self._hosts.check(parsed.host)
        return parsed

    async def _request(self, url: httpx.URL) -> bytes | str:
        """One HTTP exchange to a pinned address; returns the body, or the Location of a redirect."""
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        literal = parse_ip(host)
        addresses = [literal] if literal is not None else await self._resolver(host, port)
        self._addresses.check_all(host, addresses)
        pinned = url.copy_with(host=str(addresses[0]))
        headers: dict[str, str] = {}
        extensions: dict[str, str] = {}
        if literal is None:
            # Connect to the checked address, but speak to the server by its name (Host and TLS SNI;
            # the certificate is verified against the name).
            headers["Host"] = host if url.port is None else f"{host}:{url.port}"
            extensions["sni_hostname"] = host
        shard = self._busy.index(min(self._busy))
        self._busy[shard] += 1
        try:
            client = self._clients[shard]
            async with client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
                status = response.status_code
                if status in _REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        raise HttpError(f"redirect status {status} without Location")
                    return location
                if status in _RETRY_STATUSES:
                    raise TransientFetchError(f"status {status}", HttpError(f"server answered {status}"))
                if not 200 <= status < 300:
                    raise HttpError(f"server answered {status}")
                return await self._read_capped(response)
        except httpx.TimeoutException as exc:
            raise TransientFetchError(str(exc), FetchTimeout(f"timed out: {type(exc).__name__}")) from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise TransientFetchError(str(exc), ConnectionFailed(f"{type(exc).__name__}: {exc}")) from exc
        finally:
            self._busy[shard] -= 1

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self._settings.max_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise ResponseTooLarge(f"Content-Length {declared} exceeds the {cap}-byte cap")
        chunks: list[bytes] = []
        size = 0
        # aiter_bytes yields decoded bytes, so a gzip-encoded bomb is capped too.
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise ResponseTooLarge(f"body exceeds the {cap}-byte cap")
            chunks.append(chunk)
        return b"".join(chunks)

    def _read_file(self, url: httpx.URL) -> bytes:
        root = self._settings.file_root
        assert root is not None  # checked in __init__
        path = Path(unquote(url.path)).resolve()
        if not path.is_relative_to(root.resolve()):
            raise UrlNotAllowed("file URL outside the allowed root")
        try:
            with path.open("rb") as handle:
                data = handle.read(self._settings.max_bytes + 1)
        except OSError as exc:
            raise HttpError(f"cannot read file: {exc.strerror}") from exc
        if len(data) > self._settings.max_bytes:
            raise ResponseTooLarge(f"file exceeds the {self._settings.max_bytes}-byte cap")
        return data


class BackgroundFetcher:
    """Runs an `ImageFetcher` on an event loop in a daemon thread; thread-safe `submit`."""

    def __init__(self, settings: FetchSettings, *, resolver: Resolver = system_resolver) -> None:
        """Start the loop thread and create the fetcher on it."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="alocc-fetch", daemon=True)
        self._thread.start()

        async def create() -> ImageFetcher:
            return ImageFetcher(settings, resolver=resolver)

        self._fetcher = asyncio.run_coroutine_threadsafe(create(), self._loop).result()

    def submit(self, url: str) -> concurrent.futures.Future[bytes]:
        """Start downloading `url`; the future raises a `BadInput` subclass on failure."""
        return asyncio.run_coroutine_threadsafe(self._fetcher.fetch(url), self._loop)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel downloads in progress, close the pool and stop the thread."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            current = asyncio.current_task()
            for task in asyncio.all_tasks():
                if task is not current:
                    task.cancel()
            await self._fetcher.aclose()

        # Closing is best effort: the thread is a daemon.
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()


__all__ = ["BackgroundFetcher", "BadInput", "ImageFetcher", "redact_url", "system_resolver"]
