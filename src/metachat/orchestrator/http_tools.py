"""Calling a tenant's HTTP tool: the URL from its template, the request pinned to a checked address.

Each call resolves the host once, refuses internal addresses (`netguard`; the operator's
allowed hosts excepted) and connects to that address, with the Host header and TLS name (SNI,
certificate check) of the original host: a name that resolves elsewhere a moment later (DNS
rebinding) is never looked up again. Plain `http` is refused unless the operator allowed the
host. No redirect is followed, every call times out, and at most `max_response_bytes` are read.
"""

from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx2

from metachat.orchestrator.netguard import IPAddress, UrlRefusedError, resolve_pinned
from metachat.tenants import LoadedHttpTool
from metachat.tenants.commands import HttpTool

_PLACEHOLDER_OPEN, _PLACEHOLDER_CLOSE = "{", "}"
_REDIRECT = range(300, 400)
_OK = range(200, 300)


class ToolCallError(RuntimeError):
    """The endpoint answered with an error, or could not be reached."""


def fill_url(template: str, arguments: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The URL with its `{placeholders}` filled (URL-encoded), and the arguments not used."""
    url, rest = template, dict(arguments)
    while _PLACEHOLDER_OPEN in url:
        start = url.index(_PLACEHOLDER_OPEN)
        end = url.index(_PLACEHOLDER_CLOSE, start)
        name = url[start + 1 : end]
        if name not in rest:
            raise ValueError(f"argument {name} is required")
        url = url[:start] + quote(str(rest.pop(name)), safe="") + url[end + 1 :]
    return url, rest


def pinned_url(url: str, address: IPAddress) -> tuple[str, str, str]:
    """(URL naming the address, the Host header, the TLS server name) for one checked address."""
    split = urlsplit(url)
    host = split.hostname or ""
    ip = f"[{address}]" if address.version == 6 else str(address)  # noqa: PLR2004 - IPv6
    port = f":{split.port}" if split.port else ""
    host_header = (f"[{host}]" if ":" in host else host) + port
    return urlunsplit((split.scheme, ip + port, split.path, split.query, "")), host_header, host


def _auth_headers(tool: HttpTool, secret: str | None) -> dict[str, str]:
    if secret is None or tool.auth == "none":
        return {}
    if tool.auth == "bearer":
        return {"authorization": f"Bearer {secret}"}
    return {str(tool.header_name): secret}


class HttpToolRunner:
    """Runs tenants' HTTP tools; one per process."""

    def __init__(
        self, allowed_hosts: Collection[str], *, transport: httpx2.AsyncBaseTransport | None = None
    ) -> None:
        self._allowed = {host.lower() for host in allowed_hosts}
        self._transport = transport

    async def call(self, loaded: LoadedHttpTool, arguments: Mapping[str, Any]) -> str:
        """Call the endpoint; its status and (capped) body, or raise why not."""
        tool = loaded.tool
        url, rest = fill_url(tool.url, arguments)
        split = urlsplit(url)
        host = (split.hostname or "").lower()
        if split.scheme != "https" and host not in self._allowed:
            raise UrlRefusedError("only https, unless an operator allowed the host")
        default_port = 443 if split.scheme == "https" else 80
        address = await resolve_pinned(host, split.port or default_port, self._allowed)
        target, host_header, server_name = pinned_url(url, address)
        headers = {"host": host_header, "accept": "application/json, text/plain;q=0.9"}
        headers |= _auth_headers(tool, loaded.secret)
        async with httpx2.AsyncClient(
            transport=self._transport,
            follow_redirects=False,
            timeout=httpx2.Timeout(tool.timeout_seconds),
            trust_env=False,  # never the process's proxies or netrc credentials
        ) as client:
            request = client.build_request(
                tool.method,
                target,
                headers=headers,
                params=rest if tool.method == "GET" else None,
                json=rest if tool.method == "POST" else None,
                extensions={"sni_hostname": server_name},
            )
            try:
                response = await client.send(request, stream=True)
            except httpx2.HTTPError as exc:
                reason = type(exc).__name__
                raise ToolCallError(f"{tool.name} could not be reached: {reason}") from exc
            try:
                body = await _capped(response, tool.max_response_bytes)
            finally:
                await response.aclose()
        return _answer(response.status_code, body)


async def _capped(response: httpx2.Response, limit: int) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit].decode("utf-8", errors="replace")


def _answer(status: int, body: str) -> str:
    if status in _REDIRECT:
        raise ToolCallError(f"HTTP {status}: a redirect, and redirects are not followed")
    if status not in _OK:
        raise ToolCallError(f"HTTP {status}: {body[:500]}")
    return body
