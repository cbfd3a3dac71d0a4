"""Where the platform may connect on a tenant's behalf: public addresses, or the operator's hosts.

Internal is loopback, private, link-local (the cloud metadata service), CGNAT, ULA, multicast,
reserved or unspecified, IPv4-mapped and literal forms included (`0x7f000001`, `::ffff:127.0.0.1`
resolve to what they name). An operator allows a host with `METACHAT_LLM__ALLOWED_HOSTS`.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Collection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefusedError(ValueError):
    """A tenant-given URL points where the platform must not connect."""


def is_internal(address: IPAddress) -> bool:
    """Whether connecting to `address` would reach the platform's own network."""
    mapped = getattr(address, "ipv4_mapped", None)
    checked = mapped or address
    return not checked.is_global or checked.is_multicast


def _refuse(host: str, address: IPAddress) -> UrlRefusedError:
    return UrlRefusedError(
        f"{host} resolves to {address}, an internal address; an operator can allow it with "
        "METACHAT_LLM__ALLOWED_HOSTS"
    )


def check_addresses(host: str, addresses: list[str], allowed: Collection[str]) -> IPAddress:
    """The first address, after refusing the host if any of its addresses is internal."""
    if not addresses:
        raise UrlRefusedError(f"{host} does not resolve")
    parsed = [ipaddress.ip_address(a.split("%")[0]) for a in addresses]
    if host.lower() not in allowed:
        for address in parsed:
            if is_internal(address):
                raise _refuse(host, address)
    return parsed[0]


def resolve_checked(host: str, allowed: Collection[str]) -> IPAddress:
    """Resolve `host` (blocking) and check every address it has."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise UrlRefusedError(f"{host} does not resolve") from exc
    return check_addresses(host, [str(info[4][0]) for info in infos], allowed)


async def resolve_pinned(host: str, port: int, allowed: Collection[str]) -> IPAddress:
    """Resolve `host` once, check it, and return the address to connect to (and only to).

    Connecting to the checked address, not the name again, is what defeats DNS rebinding.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UrlRefusedError(f"{host} does not resolve") from exc
    return check_addresses(host, [str(info[4][0]) for info in infos], allowed)
