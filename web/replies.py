"""JSON answers of both Tornado apps, encoded by orjson like every other JSON of the codebase.

Tornado's `finish(dict)` would use the standard library's encoder; this writer
keeps one JSON library (and its number and string forms) for every answer.

Where the standard library's json stays, on purpose:
- `web/jsonbody.py`, the strict reading of request bodies from outside (webhook,
  login, admin), by msgspec: it names a refusal's reason in the stdlib's words
  (where the text is not JSON, which key repeats); `producers/signals.py` quotes
  values in its messages with the same library;
- `producers/samples/make_sample.py`: orjson has no `separators`, and the sample
  log's spacing is its format (a test regenerates it byte for byte);
- the tests' HTTP clients, an independent decoder of what orjson writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from http.client import responses
from typing import Any

import orjson
import tornado
import tornado.web
from tornado import httputil

# RequestHandler.clear()'s Server header: an answer written without a RequestHandler looks the same.
SERVER = f"TornadoServer/{tornado.version}"


def send_json(handler: tornado.web.RequestHandler, value: Any, status: int = 200) -> None:
    """Finish the request with `value` as JSON and `status`."""
    handler.set_status(status)
    handler.set_header("Content-Type", "application/json")
    handler.finish(orjson.dumps(value))


def write_json(connection: httputil.HTTPConnection, value: Any, status: int, headers: Iterable[tuple[str, str]] = ()) -> None:
    """Answer a request without a RequestHandler: `value` as JSON, with the status and headers send_json's would have.

    Those are RequestHandler.clear()'s (Server, Content-Type, Date), `headers` (a
    handler's defaults), then finish()'s Content-Length; the connection adds
    what HTTP/1 needs (keep-alive) as for any handler.
    """
    body = orjson.dumps(value)
    response = httputil.HTTPHeaders()
    response["Server"] = SERVER
    response["Content-Type"] = "application/json"
    response["Date"] = httputil.format_timestamp(time.time())
    for name, header in headers:
        response[name] = header
    response["Content-Length"] = str(len(body))
    connection.write_headers(httputil.ResponseStartLine("", status, responses.get(status, "Unknown")), response, body)
    connection.finish()
