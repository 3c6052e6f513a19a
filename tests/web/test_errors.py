"""The one JSON error writer: raised errors, mapped domain errors and Tornado's own, over a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import tornado.ioloop
import tornado.web
from tornado.httpclient import AsyncHTTPClient

from web.errors import ApiError, ErrorTable, JsonErrors


class Refused(Exception):
    """A domain error of some app."""


class RefusedForAField(Refused):
    field = "price"


TABLE: ErrorTable = {Refused: (409, "refused")}


class ErrorsHandler(JsonErrors, tornado.web.RequestHandler):
    def get(self, what: str) -> None:
        if what == "api":
            raise ApiError(429, "too_many_streams", "At most 2.")
        if what == "field":
            raise ApiError.of(RefusedForAField("price: must be > 0"), TABLE) or AssertionError()
        raise RuntimeError("a bug")  # Tornado's 500


@pytest.fixture
def io_loop() -> Iterator[tornado.ioloop.IOLoop]:
    """A new loop per test, without pytest-tornado's deprecated make_current."""
    asyncio.set_event_loop(None)
    loop = tornado.ioloop.IOLoop()
    yield loop
    loop.close(all_fds=True)


@pytest.fixture
def app() -> tornado.web.Application:
    routes = [(r"/errors/(api|field|bug)", ErrorsHandler)]
    return tornado.web.Application(routes, default_handler_class=NotFound, log_function=lambda handler: None)


class NotFound(JsonErrors, tornado.web.RequestHandler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)


@pytest.mark.expect_log("Uncaught exception GET /errors/bug")
@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/errors/api", 429, {"error": "too_many_streams", "message": "At most 2."}),
        ("GET", "/errors/field", 409, {"error": "refused", "message": "price: must be > 0", "field": "price"}),
        ("GET", "/errors/bug", 500, {"error": "internal_error", "message": "Internal Server Error"}),
        ("GET", "/nowhere", 404, {"error": "not_found", "message": "Not Found"}),
        ("POST", "/errors/api", 405, {"error": "method_not_allowed", "message": "Method Not Allowed"}),
    ],
)
async def test_every_error_is_the_same_json_with_its_status(
    http_client: AsyncHTTPClient, base_url: str, method: str, path: str, status: int, body: dict[str, Any]
) -> None:
    response = await http_client.fetch(base_url + path, method=method, body=b"" if method == "POST" else None, raise_error=False)
    assert response.code == status
    assert response.headers["Content-Type"] == "application/json"
    assert orjson.loads(response.body) == body


def test_a_domain_error_maps_by_its_nearest_class_and_unknown_ones_to_none() -> None:
    table: ErrorTable = {Refused: (409, "refused"), RefusedForAField: (400, "invalid_request")}
    mapped = ApiError.of(RefusedForAField("price: bad"), table)
    assert mapped is not None and (mapped.status_code, mapped.body()) == (400, {"error": "invalid_request", "message": "price: bad", "field": "price"})
    plain = ApiError.of(Refused("no"), table)
    assert plain is not None and plain.body() == {"error": "refused", "message": "no"}
    assert ApiError.of(ValueError("other"), table) is None
