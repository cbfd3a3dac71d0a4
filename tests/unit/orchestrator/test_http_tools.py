"""HTTP tools: the URL from its template, the SSRF guard, the pinned connection, no redirects."""

import ipaddress
from typing import Any

import httpx2
import msgspec
import pytest

from metachat.orchestrator.http_tools import HttpToolRunner, ToolCallError, fill_url, pinned_url
from metachat.orchestrator.netguard import UrlRefusedError, check_addresses, resolve_pinned
from metachat.tenants import LoadedHttpTool
from metachat.tenants.commands import HttpTool


class TestFillUrl:
    def test_placeholders_are_url_encoded_and_the_rest_is_left(self) -> None:
        url, rest = fill_url(
            "https://shop.example.com/orders/{id}?x=1", {"id": "a/b?c#d e", "verbose": True}
        )
        assert url == "https://shop.example.com/orders/a%2Fb%3Fc%23d%20e?x=1"
        assert rest == {"verbose": True}

    def test_a_missing_argument_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="id"):
            fill_url("https://shop.example.com/{id}", {})

    def test_pinned_url_keeps_the_host_header_and_the_tls_name(self) -> None:
        address = ipaddress.ip_address("93.184.216.34")
        target, host, sni = pinned_url("https://shop.example.com:8443/a?b=1", address)
        assert (target, host, sni) == (
            "https://93.184.216.34:8443/a?b=1",
            "shop.example.com:8443",
            "shop.example.com",
        )
        target, _, _ = pinned_url(
            "https://shop.example.com/a", ipaddress.ip_address("2606:2800::1")
        )
        assert target == "https://[2606:2800::1]/a"


class TestGuard:
    @pytest.mark.parametrize(
        "host",
        ["127.0.0.1", "0x7f000001", "2130706433", "::1", "::ffff:127.0.0.1", "169.254.169.254",
         "10.0.0.8", "192.168.1.1", "100.64.0.1", "fd00::1", "224.0.0.1", "0.0.0.0", "localhost"],  # noqa: S104
    )  # fmt: skip
    async def test_internal_addresses_are_refused(self, host: str) -> None:
        with pytest.raises(UrlRefusedError):
            await resolve_pinned(host, 443, allowed=())

    def test_one_internal_address_among_public_ones_refuses_the_host(self) -> None:
        with pytest.raises(UrlRefusedError):
            check_addresses("rebind.example", ["93.184.216.34", "127.0.0.1"], allowed=())

    def test_an_allowed_host_may_be_internal(self) -> None:
        assert str(check_addresses("models.internal", ["10.0.0.5"], {"models.internal"})) == (
            "10.0.0.5"
        )

    async def test_a_public_literal_is_pinned(self) -> None:
        assert str(await resolve_pinned("93.184.216.34", 443, allowed=())) == "93.184.216.34"


def _loaded(**changes: Any) -> LoadedHttpTool:
    fields = {"name": "t", "description": "d", "url": "http://127.0.0.1/orders/{id}", **changes}
    secret = fields.pop("secret", None)
    return LoadedHttpTool(tool=msgspec.convert(fields, HttpTool), secret=secret)


class TestRunner:
    async def test_http_is_refused_unless_the_host_is_allowed(self) -> None:
        with pytest.raises(UrlRefusedError):
            await HttpToolRunner(()).call(_loaded(), {"id": "1"})

    async def test_a_hostname_resolving_to_loopback_is_refused(self) -> None:
        with pytest.raises(UrlRefusedError):
            await HttpToolRunner(()).call(_loaded(url="https://localhost/{id}"), {"id": "1"})

    async def test_the_request_goes_to_the_pinned_address_with_auth(self) -> None:
        seen: list[httpx2.Request] = []

        async def handle(request: httpx2.Request) -> httpx2.Response:
            seen.append(request)
            return httpx2.Response(200, text="x" * 100)

        runner = HttpToolRunner(["127.0.0.1"], transport=httpx2.MockTransport(handle))
        loaded = _loaded(auth="bearer", secret="tok-123", max_response_bytes=10)  # noqa: S106
        assert await runner.call(loaded, {"id": "a b", "q": "z"}) == "x" * 10
        (request,) = seen
        assert str(request.url) == "http://127.0.0.1/orders/a%20b?q=z"
        assert request.headers["authorization"] == "Bearer tok-123"
        assert request.extensions["sni_hostname"] == "127.0.0.1"

    async def test_a_redirect_to_an_internal_address_is_not_followed(self) -> None:
        seen: list[httpx2.Request] = []

        async def handle(request: httpx2.Request) -> httpx2.Response:
            seen.append(request)
            return httpx2.Response(302, headers={"location": "http://169.254.169.254/latest/"})

        runner = HttpToolRunner(["127.0.0.1"], transport=httpx2.MockTransport(handle))
        with pytest.raises(ToolCallError, match="redirect"):
            await runner.call(_loaded(method="POST"), {"id": "1"})
        assert len(seen) == 1
