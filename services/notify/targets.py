"""Where a webhook may go (server-side request forgery): the rules for a subscriber's URL.

A URL is refused when it is not http(s) (not https outside development and tests), carries
credentials, or names its host in an odd numeric form (`2130706433`, `127.1`, `0x7f.1`: the
URL parser turns them into `127.0.0.1`, and nobody writes them but an attacker). Its host is
resolved and every address it resolves to must be public: loopback, private, link-local,
multicast, reserved and unspecified addresses (also inside IPv4-mapped, 6to4, Teredo and NAT64
IPv6 addresses) are refused, unless the operator's allow-list (`NOTIFY_WEBHOOK_ALLOWLIST`,
hosts and CIDRs) names the host or the address. The check runs at subscribe time and again
before every send, and the send connects to the address that was checked (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pydantic import AnyHttpUrl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_REFUSED_KINDS = ("unspecified", "loopback", "link_local", "multicast", "private", "reserved")


class RefusedTarget(ValueError):
    """The URL may never be called (an answer for the subscriber, naming why)."""


CHECK_THREADS = 32
"""Look-ups at once for subscribing, all owners together."""
CHECKS_PER_OWNER = 2
"""Look-ups at once for one owner's subscribing."""


class BusyOwner(Exception):
    """The owner's earlier look-ups are still running: subscribe again shortly."""


class UnresolvedTarget(Exception):
    """The host did not resolve now (it may later)."""


def url_refusal(url: AnyHttpUrl, raw: str) -> str | None:
    """Why `url` (parsed from `raw`) is refused whatever the environment and DNS say, or None."""
    if url.scheme not in ("http", "https"):
        return "only http and https URLs are allowed"
    if url.username is not None or url.password is not None:
        return "credentials in the URL are not allowed; the secret signs every delivery"
    host = url.host or ""
    if not host:
        return "the URL names no host"
    if isinstance(_literal(host), ipaddress.IPv4Address) and not re.match(
            rf"^\s*https?://{re.escape(host)}(?:[:/?#]|\s*$)", raw, re.IGNORECASE):
        return "write an IPv4 address as four decimal numbers (a.b.c.d)"
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def address_refusal(address: IPAddress) -> str | None:
    """What makes `address` not public ("127.0.0.1 (loopback)"), or None when it is."""
    for carried in _embedded(address):
        kind = next((kind for kind in _REFUSED_KINDS if getattr(carried, f"is_{kind}")),
                    None if carried.is_global else "not global")
        if kind is not None:
            kind = kind.replace("_", "-")
            return f"{address} ({kind})" if carried == address \
                else f"{address} ({carried} inside, {kind})"
    return None


def _embedded(address: IPAddress) -> Iterable[IPAddress]:
    """Every IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), then the
    address itself: each must be public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            yield address.ipv4_mapped
        if address.sixtofour is not None:
            yield address.sixtofour
        if address.teredo is not None:
            yield from address.teredo
        if address in NAT64:
            yield ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    yield address


@dataclass(frozen=True)
class Resolved:
    """A checked target: the host to name (Host header, TLS) and the address to connect to."""

    host: str
    port: int
    address: IPAddress


class TargetPolicy:
    """The allow-list and whether plain http is allowed, applied to URLs and their addresses."""

    def __init__(self, allowlist: Iterable[str], *, require_https: bool, lookups: int,
                 checks: int = CHECK_THREADS, checks_per_owner: int = CHECKS_PER_OWNER) -> None:
        """`lookups`: DNS look-ups at once for sends. They run in threads of their own, not
        the event loop's few default ones, and a lane holds a host's sends (and so its
        look-ups) to a few at once: a subscriber's slow name server holds up its own tries
        only, never another host's look-up. `checks`, `checks_per_owner`: the look-ups of
        subscribing run in threads apart from the sends', at most a few per owner at once
        (`check`)."""
        self.require_https = require_https
        self._lookups = ThreadPoolExecutor(max_workers=lookups, thread_name_prefix="notify-dns")
        self._checks = ThreadPoolExecutor(max_workers=checks,
                                          thread_name_prefix="notify-dns-check")
        self._checks_per_owner = checks_per_owner
        self._checking: Counter[str] = Counter()
        self._hosts: set[str] = set()
        self._networks: list[IPNetwork] = []
        for entry in allowlist:
            network = allowlisted_network(entry)
            if network is None:
                self._hosts.add(_host_name(entry))
            else:
                self._networks.append(network)

    async def resolve(self, url: str) -> Resolved:
        """Check `url` and every address its host resolves to; the first, to connect to.
        Raises RefusedTarget, or UnresolvedTarget when the host does not resolve now."""
        return await self._resolve(url, self._lookups, None)

    async def check(self, url: str, owner: str) -> Resolved:
        """`resolve` for subscribing on behalf of `owner`. A look-up its caller stopped waiting
        for goes on in its thread until the resolver gives up, so an owner may have only
        `checks_per_owner` of them at once (BusyOwner beyond), and they never take the sends'
        threads: no owner's made-up host names can stall another's deliveries or subscribing."""
        if self._checking[owner] >= self._checks_per_owner:
            raise BusyOwner(f"{owner} has {self._checking[owner]} host look-ups still running")
        return await self._resolve(url, self._checks, owner)

    async def _resolve(self, url: str, threads: ThreadPoolExecutor, owner: str | None
                       ) -> Resolved:
        parsed = AnyHttpUrl(url)
        refusal = url_refusal(parsed, url)
        if refusal is None and self.require_https and parsed.scheme != "https":
            refusal = "https is required"
        if refusal is not None:
            raise RefusedTarget(refusal)
        host = (parsed.host or "").strip("[]")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        literal = _literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = await self._lookup(host, port, threads, owner)
            except OSError as exc:
                raise UnresolvedTarget(f"{host} does not resolve ({exc})") from exc
            if not addresses:
                raise UnresolvedTarget(f"{host} does not resolve")
        if _host_name(host) not in self._hosts:
            for address in addresses:
                refusal = address_refusal(address)
                if refusal is not None and not any(address in n for n in self._networks):
                    raise RefusedTarget(
                        f"{refusal} is not a public address" if literal is not None
                        else f"{host} resolves to {refusal}, not a public address")
        return Resolved(host=host, port=port, address=addresses[0])

    async def _lookup(self, host: str, port: int, threads: ThreadPoolExecutor,
                      owner: str | None) -> list[IPAddress]:
        lookup = threads.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        if owner is not None:  # counted until the thread is done, not until the caller gives up
            self._checking[owner] += 1
            loop = asyncio.get_running_loop()
            lookup.add_done_callback(lambda _: loop.call_soon_threadsafe(self._checked, owner))
        infos = await asyncio.wrap_future(lookup)
        return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]

    def _checked(self, owner: str) -> None:
        self._checking[owner] -= 1
        if not self._checking[owner]:
            del self._checking[owner]

    def close(self) -> None:
        for threads in (self._lookups, self._checks):
            threads.shutdown(wait=False, cancel_futures=True)


def allowlisted_network(entry: str) -> IPNetwork | None:
    """The network an allow-list entry names (an address or a CIDR), or None for a host name."""
    try:
        return ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        return None


def _host_name(host: str) -> str:
    return host.strip().lower().rstrip(".")
