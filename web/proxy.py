"""The client behind a trusted reverse proxy: X-Forwarded-For and X-Forwarded-Proto, believed only when told to.

A process started with `--trust-proxy` reads the client's address
(`request_address`, for the streamer's per-address login limit and the
webhook's budget of failed authentications) and scheme (a session cookie over
https is `Secure`) from these headers; without it they are ignored, since any
client can send them. Only the LAST entry of each counts: the one the proxy itself appended
(nginx's `$proxy_add_x_forwarded_for` adds the peer it saw to whatever the
client sent). Tornado's own `xheaders` is not used: it also believes X-Real-Ip
and X-Scheme, which nginx passes through from the client unless told to set
them, so a client could choose its address and escape the limit.
"""

from __future__ import annotations

import ipaddress

from tornado import httputil

SCHEMES = frozenset({"http", "https"})


def _last(header: str | None) -> str:
    return header.rsplit(",", 1)[-1].strip() if header else ""


def client_address(peer: str, forwarded_for: str | None) -> str:
    """The address the proxy saw the client at (the last X-Forwarded-For entry), else `peer`."""
    candidate = _last(forwarded_for)
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer


def request_address(request: httputil.HTTPServerRequest, trust_proxy: bool) -> str:
    """The client's address: the socket's peer, or with `trust_proxy` the last X-Forwarded-For entry (else the peer)."""
    peer = request.remote_ip or ""
    if not trust_proxy:
        return peer
    return client_address(peer, request.headers.get("X-Forwarded-For"))


def client_scheme(scheme: str, forwarded_proto: str | None) -> str:
    """The scheme the client used with the proxy (the last X-Forwarded-Proto value), else `scheme`."""
    candidate = _last(forwarded_proto).lower()
    return candidate if candidate in SCHEMES else scheme
