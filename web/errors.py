"""The one JSON error of both Tornado apps (the streamer and the webhook), and its one writer.

Every answer but a success is `{"error": <code>, "message": <text>}`, plus
`"field"` where the webhook names the offending field (CONTRACT §3, §5), with
its HTTP status. A handler raises ApiError (or maps a domain error to one with
`ApiError.of` and a table of its app); Tornado's own errors (404, 405, a bad
request, the 500 of an uncaught exception) pass through the same writer with
the code of their status. A request served without a RequestHandler (web/front.py)
gets the same body from `write_error_json`, and one refused before it is parsed (a
malformed head, web/readloop.py; headers over the limit, web/overflow.py) from
`raw_error_response`, whole bytes written on the connection:

    tornado.web.HTTPError
     └── ApiError    status, code, message, field
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from http.client import responses
from typing import Any, ClassVar

import orjson
import tornado.web
from tornado import httputil
from tornado.log import gen_log

from web.replies import SERVER, send_json, write_json

# The code of an error raised without one (Tornado's own, or ApiError.of's fallback).
DEFAULT_CODES = {
    400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
    429: "too_many_requests", 500: "internal_error", 503: "unavailable",
}
# A domain error's class → (status, code), one table per app at its HTTP layer.
ErrorTable = Mapping[type[BaseException], tuple[int, str]]


class ApiError(tornado.web.HTTPError):
    """An HTTP error with the contract's JSON body."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(status)
        self.code = code
        self.message = message
        self.field = field

    @classmethod
    def of(cls, exc: BaseException, table: ErrorTable) -> ApiError | None:
        """The ApiError a domain error stands for (its text, its `field` if any); None if `table` has no entry."""
        for kind in type(exc).__mro__:
            entry = table.get(kind)
            if entry is not None:
                return cls(entry[0], entry[1], str(exc), getattr(exc, "field", None))
        return None

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        body = {"error": self.code, "message": self.message}
        return body if self.field is None else {**body, "field": self.field}


def send_error_json(handler: tornado.web.RequestHandler, error: ApiError) -> None:
    """Finish the request with `error` (the one writer of every JSON error)."""
    send_json(handler, error.body(), error.status_code)


def write_error_json(connection: httputil.HTTPConnection, error: ApiError, headers: Iterable[tuple[str, str]] = ()) -> None:
    """The same answer on a request served without a RequestHandler (web/front.py), `headers` added."""
    write_json(connection, error.body(), error.status_code, headers)


def raw_error_response(error: ApiError) -> bytes:
    """The whole HTTP/1.1 answer, head and JSON body, for a request no handler will see; the connection then closes."""
    body = orjson.dumps(error.body())
    head = (
        f"HTTP/1.1 {error.status_code} {responses.get(error.status_code, 'Unknown')}\r\n"
        f"Server: {SERVER}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class JsonErrors:
    """RequestHandler mixin: every error, Tornado's own included, is written as the contract's JSON.

    `domain_errors` maps exceptions a handler may let escape to their answer
    (the streamer's DatabaseUnavailable → 503): they are answers, not bugs, so
    they are written with their status and code and not logged as tracebacks.
    """

    domain_errors: ClassVar[ErrorTable] = {}

    def write_error(self: Any, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if not isinstance(exc, ApiError):
            mapped = ApiError.of(exc, self.domain_errors) if exc is not None else None
            exc = mapped or ApiError(status_code, DEFAULT_CODES.get(status_code, "internal_error"), self._reason)
        send_error_json(self, exc)

    def log_exception(self: Any, typ: Any, value: BaseException | None, tb: Any) -> None:
        if value is not None and ApiError.of(value, self.domain_errors) is not None:
            return  # where the condition began (a dependency going down) logged it once
        if isinstance(value, tornado.web.HTTPError) and value.status_code < 500:
            # Tornado writes a 4xx's log_message as a WARNING per request ("Invalid unicode in url",
            # "... is not in root static directory", "Invalid body: ..."), with the request's text in it:
            # an outsider decides how many there are. DEBUG, like the 4xx access lines (streamer/access.py).
            if value.log_message and gen_log.isEnabledFor(logging.DEBUG):
                gen_log.debug("%d %s: %s", value.status_code, self._request_summary(), value.get_message())
            return
        super().log_exception(typ, value, tb)  # type: ignore[misc]  # the RequestHandler this mixin precedes
