"""Fetching one URL for the crawler: retries, backoff, Retry-After, size cap, content checks.

`fetch_image` always returns a `FetchResult`: the image bytes, or a failure with one of the named
reasons in FAILURE_REASONS (never an exception), so every URL of a crawl ends as a stored image or
a named failure. Retried: HTTP 429 and 5xx, timeouts, connection errors and truncated bodies, with
exponential backoff and jitter, or the server's Retry-After (seconds or an HTTP date) when it sends
one, capped so that a hostile server cannot park a worker for hours.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

# Reason -> what it means; docs/crawling.md shows this table. HTTP failures are "http_<status>".
FAILURE_REASONS = {
    "http_<status>": "the server answered with this status (after retries for 429 and 5xx)",
    "timeout": "no response within the connect/read timeouts, or the whole fetch exceeded --total-timeout",
    "connection_error": "could not connect, or the connection broke (after retries)",
    "truncated": "the body ended before its Content-Length (after retries)",
    "too_large": "Content-Length or the streamed body exceeded --max-bytes",
    "bad_content_type": "Content-Type is neither image/* nor a generic binary type",
    "not_an_image": "the bytes start with no JPEG/PNG/GIF/WebP/BMP/TIFF signature",
    "redirect_loop": "a redirect led back to a URL already visited",
    "too_many_redirects": "more than --max-redirects redirects",
    "bad_url": "not a well-formed http(s) URL (scheme, host, port 1-65535, IPv6 literal, length)",
    "bad_redirect": "a redirect without a Location header, or to a malformed or non-http(s) URL",
    "bad_row": "the list row has no URL or no category",
    "unexpected_error": "the crawler failed on this URL in a way it does not name (a bug: please report it)",
}
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Failures that may pass with time (`fdrd crawl --retry-failed` fetches them again).
TRANSIENT_REASONS = frozenset(
    {"timeout", "connection_error", "truncated", "unexpected_error"} | {f"http_{s}" for s in RETRYABLE_STATUSES}
)
MAX_PORT = 65535
# Content types some servers use for images they do not label properly; the magic bytes decide.
GENERIC_CONTENT_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", "application/binary"})


@dataclass(frozen=True)
class FetchPolicy:
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_timeout: float = 120.0  # whole fetch incl. retries and backoff; stops trickling servers
    retries: int = 3  # extra attempts after the first
    backoff_base: float = 0.5  # seconds before the first retry; doubles per retry, with jitter
    backoff_max: float = 30.0
    max_retry_after: float = 60.0  # cap on an honoured Retry-After
    max_bytes: int = 20_000_000
    max_redirects: int = 5
    user_agent: str = "fdrd-crawler/0.1 (+https://github.com/fdrd)"


@dataclass(frozen=True)
class FetchResult:
    url: str
    data: bytes | None  # set on success only
    reason: str = ""  # "" on success, else a FAILURE_REASONS key (http_<status> spelled out)
    detail: str = ""
    http_status: int | None = None
    attempts: int = 0
    final_url: str = ""

    @property
    def ok(self) -> bool:
        return self.data is not None


class _Retry(Exception):
    """An attempt failed in a way worth retrying; carries the failure should retries run out."""

    def __init__(self, reason: str, detail: str, status: int | None = None, wait: float | None = None):
        super().__init__(reason)
        self.reason, self.detail, self.status, self.wait = reason, detail, status, wait


class _Failure(Exception):
    def __init__(self, reason: str, detail: str, status: int | None = None):
        super().__init__(reason)
        self.reason, self.detail, self.status = reason, detail, status


def image_kind(data: bytes) -> str | None:
    """The image format named by the leading bytes (a file suffix), or None for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"BM") and len(data) >= 14:
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None when absent
    or unreadable, 0 for dates in the past."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def parse_url(url: str, failure: str = "bad_url") -> httpx.URL:
    """`url` as an httpx.URL when it is a well-formed http(s) URL with a host and a valid port; else
    _Failure(`failure`) naming what is wrong. Called before any request, so a malformed URL is one
    URL's named failure, never an exception out of the crawl."""
    if not url.lower().startswith(("http://", "https://")):
        raise _Failure(failure, f"unsupported URL {url[:80]!r}")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as error:
        raise _Failure(failure, f"{str(error)[:200]} in {url[:80]!r}") from None
    if not parsed.host:
        raise _Failure(failure, f"no host in {url[:80]!r}")
    if parsed.port is not None and not 1 <= parsed.port <= MAX_PORT:
        raise _Failure(failure, f"port {parsed.port} out of range 1-{MAX_PORT} in {url[:80]!r}")
    return parsed


def backoff_delay(retry_number: int, policy: FetchPolicy, rng: random.Random) -> float:
    """Exponential backoff with jitter in [half, full] of the step, so synchronized workers spread out."""
    step = min(policy.backoff_max, policy.backoff_base * (2 ** retry_number))
    return step * rng.uniform(0.5, 1.0)


class HostLimiter:
    """At most `per_host` requests in flight to one host at a time. A host's semaphore is dropped
    when nobody holds or awaits it, so a list spanning millions of hosts does not keep millions."""

    def __init__(self, per_host: int):
        self.per_host = per_host
        self._hosts: dict[str, tuple[asyncio.Semaphore, int]] = {}  # key -> (semaphore, users)

    @staticmethod
    def key(url: httpx.URL) -> str:
        return f"{url.scheme}://{url.host}:{url.port or ''}"

    def __len__(self) -> int:
        return len(self._hosts)

    @contextlib.asynccontextmanager
    async def slot(self, url: httpx.URL):
        key = self.key(url)
        semaphore, users = self._hosts.get(key, (None, 0))
        if semaphore is None:
            semaphore = asyncio.Semaphore(self.per_host)
        self._hosts[key] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._hosts[key]
            if users == 1:
                del self._hosts[key]
            else:
                self._hosts[key] = (semaphore, users - 1)


async def fetch_image(client: httpx.AsyncClient, url: str, policy: FetchPolicy, hosts: HostLimiter,
                      rng: random.Random) -> FetchResult:
    attempts = 0

    async def attempt_loop() -> FetchResult:
        nonlocal attempts
        for retry_number in range(policy.retries + 1):
            attempts += 1
            try:
                data, final_url, status = await _attempt(client, url, policy, hosts)
                return FetchResult(url, data, http_status=status, attempts=attempts, final_url=final_url)
            except _Retry as retry:
                if retry_number == policy.retries:
                    return FetchResult(url, None, retry.reason, retry.detail, retry.status, attempts)
                wait = retry.wait if retry.wait is not None else backoff_delay(retry_number, policy, rng)
                await asyncio.sleep(min(wait, policy.max_retry_after))
        raise AssertionError("unreachable: the last attempt returns")

    try:
        parse_url(url)
        return await asyncio.wait_for(attempt_loop(), policy.total_timeout)
    except _Failure as failure:
        return FetchResult(url, None, failure.reason, failure.detail, failure.status, attempts)
    except asyncio.TimeoutError:
        return FetchResult(url, None, "timeout", f"fetch exceeded {policy.total_timeout:g} s in total", None, attempts)


async def _attempt(client: httpx.AsyncClient, url: str, policy: FetchPolicy,
                   hosts: HostLimiter) -> tuple[bytes, str, int]:
    """One attempt, following redirects by hand so that loops and hop counts are ours to name."""
    current = parse_url(url)
    visited = {str(current)}
    for _hop in range(policy.max_redirects + 1):
        try:
            async with hosts.slot(current):
                async with client.stream("GET", current) as response:
                    if response.is_redirect:
                        target = _redirect_target(current, response)
                        if str(target) in visited:
                            raise _Failure("redirect_loop", f"{current} redirects back to {target}", response.status_code)
                        visited.add(str(target))
                        current = target
                        continue
                    return await _read_image(response, policy), str(current), response.status_code
        except httpx.TimeoutException as error:
            raise _Retry("timeout", f"{type(error).__name__} at {current}") from error
        except httpx.RemoteProtocolError as error:
            if "location header" in str(error).lower():  # httpx reads Location itself, even unfollowed
                raise _Failure("bad_redirect", f"{current}: {str(error)[:200]}") from error
            truncated = "incomplete" in str(error) or "complete message body" in str(error)
            raise _Retry("truncated" if truncated else "connection_error", str(error)[:200]) from error
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
            raise _Failure("bad_url", str(error)[:200]) from error
        except httpx.TransportError as error:
            raise _Retry("connection_error", f"{type(error).__name__}: {str(error)[:200]}") from error
    raise _Failure("too_many_redirects", f"more than {policy.max_redirects} redirects from {url}")


def _redirect_target(current: httpx.URL, response: httpx.Response) -> httpx.URL:
    location = response.headers.get("location")
    if not location:
        raise _Failure("bad_redirect", f"HTTP {response.status_code} redirect without a Location header at {current}",
                       response.status_code)
    try:
        target = str(current.join(location))
    except (httpx.InvalidURL, ValueError, TypeError) as error:
        raise _Failure("bad_redirect", f"Location {location[:80]!r}: {str(error)[:120]}", response.status_code) from None
    try:
        return parse_url(target, failure="bad_redirect")
    except _Failure as failure:
        raise _Failure("bad_redirect", f"redirect from {current}: {failure.detail}", response.status_code) from None


async def _read_image(response: httpx.Response, policy: FetchPolicy) -> bytes:
    status = response.status_code
    if status in RETRYABLE_STATUSES:
        raise _Retry(f"http_{status}", response.reason_phrase, status,
                     wait=parse_retry_after(response.headers.get("retry-after")))
    if status != 200:
        raise _Failure(f"http_{status}", response.reason_phrase, status)
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and not content_type.startswith("image/") and content_type not in GENERIC_CONTENT_TYPES:
        raise _Failure("bad_content_type", content_type, status)
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise _Failure("too_large", f"Content-Length {declared} > {policy.max_bytes}", status)
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > policy.max_bytes:  # stop streaming: the rest is never downloaded
            raise _Failure("too_large", f"body passed {policy.max_bytes} bytes", status)
        chunks.append(chunk)
    data = b"".join(chunks)
    if image_kind(data) is None:
        raise _Failure("not_an_image", f"{size} bytes starting {data[:8]!r}", status)
    return data
