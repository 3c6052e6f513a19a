"""The admin REST endpoints: the same actions and JSON as tradestream-admin, admins only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from tests.streamer.conftest import World


async def call(client: AsyncHTTPClient, url: str, method: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    response: HTTPResponse = await client.fetch(
        url, method=method, body=raw, headers=headers, raise_error=False, allow_nonstandard_methods=True
    )
    return response.code, json.loads(response.body)


@pytest.mark.gen_test
async def test_admin_endpoints_create_link_unlink_and_manage_strategies(http_client: AsyncHTTPClient, base_url: str, world: World) -> None:
    root = world.users["root"].bearer
    api = base_url + "/api/admin"
    code, user = await call(http_client, api + "/users", "POST", {"username": "dora", "password": "dora-pw"}, root)
    assert code == 201 and set(user) == {"id", "username", "is_admin", "api_token"} and user["is_admin"] is False
    code, account = await call(http_client, api + "/accounts", "POST", {"username": "dora", "name": "main", "exchange": "paper", "capital": 500}, root)
    assert (code, account) == (201, {"id": account["id"], "user_id": user["id"], "name": "main", "exchange": "paper", "capital": "500"})
    code, strategy = await call(http_client, api + "/strategies", "POST", {"owner": "dora", "name": "Dora's", "group_name": "dora-1"}, root)
    assert code == 201 and set(strategy) == {"id", "owner_id", "name", "group_name", "webhook_token", "is_active"}
    link = {"strategy_id": 1, "account_id": account["id"]}
    assert await call(http_client, api + "/links", "POST", link, root) == (201, link)
    assert await call(http_client, api + "/links", "POST", link, root) == (409, {"error": "conflict", "message": f"account {account['id']} is already linked to strategy 1"})
    assert await call(http_client, api + "/links", "DELETE", link, root) == (200, link)
    code, deactivated = await call(http_client, api + f"/strategies/{strategy['id']}/deactivate", "POST", None, root)
    assert code == 200 and deactivated["is_active"] is False
    code, activated = await call(http_client, api + f"/strategies/{strategy['id']}/activate", "POST", None, root)
    assert code == 200 and activated["is_active"] is True
    assert await call(http_client, api + f"/strategies/{strategy['id']}", "DELETE", None, root) == (200, {"strategy_id": strategy["id"]})
    code, error = await call(http_client, api + f"/strategies/{strategy['id']}", "DELETE", None, root)
    assert code == 404 and error["error"] == "not_found"


@pytest.mark.gen_test
async def test_unlink_takes_query_parameters_too(http_client: AsyncHTTPClient, base_url: str, world: World) -> None:
    url = f"{base_url}/api/admin/links?strategy_id=4&account_id={world.accounts['u10']}"
    assert await call(http_client, url, "DELETE", None, world.users["root"].bearer) == (200, {"strategy_id": 4, "account_id": world.accounts["u10"]})


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/users", {"username": "", "password": "x"}, 400),
        ("POST", "/users", {"username": "ok", "password": 5}, 400),
        ("POST", "/users", {"username": "ok", "password": "x", "is_admin": "yes"}, 400),
        ("POST", "/users", {"username": "u10", "password": "x"}, 409),
        ("POST", "/users", b"{nope", 400),
        ("POST", "/accounts", {"username": "nobody", "name": "a", "exchange": "p", "capital": 1}, 404),
        ("POST", "/accounts", {"username": "u10", "name": "a", "exchange": "p", "capital": True}, 400),
        ("POST", "/accounts", {"username": "u10", "name": "a", "exchange": "p", "capital": -1}, 400),
        ("POST", "/strategies", {"owner": "u10", "name": "n", "group_name": "g1"}, 409),
        ("POST", "/links", {"strategy_id": "01", "account_id": 1}, 400),
        ("POST", "/links", {"strategy_id": 99, "account_id": 1}, 404),
        ("DELETE", "/links", {"strategy_id": 2, "account_id": 1}, 404),
        ("POST", "/strategies/+1/deactivate", None, 400),
        ("POST", "/strategies/99/deactivate", None, 404),
        ("POST", "/strategies/1", None, 405),
        ("POST", "/users/99/deactivate", None, 404),
        ("POST", "/users/abc/activate", None, 400),
        ("POST", "/users/10/password", {"password": 5}, 400),
        ("POST", "/users/10/password", {"password": ""}, 400),
        ("DELETE", "/users/10/deactivate", None, 405),
    ],
)
async def test_admin_errors_have_their_status_and_a_json_body(
    http_client: AsyncHTTPClient, base_url: str, world: World, method: str, path: str, body: Any, status: int
) -> None:
    code, error = await call(http_client, base_url + "/api/admin" + path, method, body, world.users["root"].bearer)
    assert code == status
    assert set(error) == {"error", "message"} and error["message"]


@pytest.mark.gen_test
async def test_admin_endpoints_refuse_non_admins_and_strangers(http_client: AsyncHTTPClient, base_url: str, world: World) -> None:
    url = base_url + "/api/admin/strategies/1/deactivate"
    assert (await call(http_client, url, "POST", None, world.users["u10"].bearer))[0] == 403
    assert (await call(http_client, url, "POST", None, {}))[0] == 401
