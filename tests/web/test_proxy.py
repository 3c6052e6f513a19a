"""What a trusted proxy's headers say about the client: only their last entry counts (web/proxy.py)."""

from __future__ import annotations

import pytest

from web.proxy import client_address, client_scheme

# (X-Forwarded-For as received, the address it yields; the socket's peer is 10.0.0.1, the proxy)
FORWARDED_FOR = [
    (None, "10.0.0.1"),
    ("", "10.0.0.1"),
    ("203.0.113.7", "203.0.113.7"),
    ("198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the client's own claim first, the proxy's entry last
    ("198.51.100.1,203.0.113.7", "203.0.113.7"),
    ("  2001:db8::1 ", "2001:db8::1"),
    ("203.0.113.7, not-an-address", "10.0.0.1"),  # a proxy that appended garbage: the peer, not the client's claim
    ("203.0.113.7, unknown", "10.0.0.1"),
    ("::ffff:203.0.113.7", "::ffff:cb00:7107"),
]


@pytest.mark.parametrize(("header", "address"), FORWARDED_FOR)
def test_the_client_address_is_the_last_forwarded_for_entry_else_the_peer(header: str | None, address: str) -> None:
    assert client_address("10.0.0.1", header) == address


# (X-Forwarded-Proto as received, the scheme it yields for a plain-http connection)
FORWARDED_PROTO = [
    (None, "http"),
    ("https", "https"),
    ("HTTPS", "https"),
    ("http, https", "https"),
    ("https, http", "http"),
    ("gopher", "http"),
    ("", "http"),
]


@pytest.mark.parametrize(("header", "scheme"), FORWARDED_PROTO)
def test_the_scheme_is_the_last_forwarded_proto_value_if_it_is_http_or_https(header: str | None, scheme: str) -> None:
    assert client_scheme("http", header) == scheme
