"""`--trust-proxy`: X-Forwarded-Proto makes the session cookie Secure and X-Forwarded-For the login limit's address,
only when the streamer is told to believe them (an in-process streamer over real HTTP)."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

PROXY = {"X-Forwarded-Proto": "https"}


async def login(client: AsyncHTTPClient, base_url: str, headers: dict[str, str], username: str = "u10") -> HTTPResponse:
    body = json.dumps({"username": username, "password": f"{username}-pw"}).encode()
    return await client.fetch(base_url + "/api/login", method="POST", body=body, headers=headers, raise_error=False)


def is_secure(response: HTTPResponse) -> bool:
    return "secure" in [part.strip().lower() for part in response.headers["Set-Cookie"].split(";")]


@pytest.mark.gen_test
async def test_without_trust_proxy_forwarded_headers_are_ignored(http_client: AsyncHTTPClient, base_url: str) -> None:
    response = await login(http_client, base_url, PROXY)
    assert response.code == 200 and not is_secure(response)


@pytest.mark.gen_test
@pytest.mark.streamer_config(trust_proxy=True)
async def test_behind_a_trusted_proxy_an_https_client_gets_a_secure_cookie(http_client: AsyncHTTPClient, base_url: str) -> None:
    assert is_secure(await login(http_client, base_url, PROXY))
    assert not is_secure(await login(http_client, base_url, {"X-Forwarded-Proto": "http"}))


USERS = ("u10", "u11", "root")


async def three_logins(client: AsyncHTTPClient, base_url: str, forwarded: list[str]) -> list[int]:
    return [(await login(client, base_url, {"X-Forwarded-For": xff}, name)).code for xff, name in zip(forwarded, USERS)]


@pytest.mark.gen_test
@pytest.mark.streamer_config(login_per_address=2)
async def test_without_trust_proxy_every_login_counts_for_the_socket_address(http_client: AsyncHTTPClient, base_url: str) -> None:
    assert await three_logins(http_client, base_url, ["203.0.113.1", "203.0.113.2", "203.0.113.3"]) == [200, 200, 429]


# X-Forwarded-For of three logins by three users, and their statuses, with 2 logins per address.
TRUSTED_LIMITS = [
    (["203.0.113.1", "203.0.113.2", "203.0.113.3"], [200, 200, 200]),  # one client each
    (["203.0.113.1", "203.0.113.1", "203.0.113.1"], [200, 200, 429]),
    # A client's own claim comes first; the entry its proxy appended is what counts.
    (["198.51.100.1, 203.0.113.1", "198.51.100.2, 203.0.113.1", "198.51.100.3, 203.0.113.1"], [200, 200, 429]),
]


@pytest.mark.parametrize(("forwarded", "statuses"), TRUSTED_LIMITS)
@pytest.mark.gen_test
@pytest.mark.streamer_config(login_per_address=2, trust_proxy=True)
async def test_behind_a_trusted_proxy_the_login_limit_counts_the_address_the_proxy_appended(
    http_client: AsyncHTTPClient, base_url: str, forwarded: list[str], statuses: list[int]
) -> None:
    assert await three_logins(http_client, base_url, forwarded) == statuses
