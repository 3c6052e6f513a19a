"""JSON answers of both Tornado apps, encoded by orjson like every other JSON of the codebase.

Tornado's `finish(dict)` would use the standard library's encoder; this writer
keeps one JSON library (and its number and string forms) for every answer.
"""

from __future__ import annotations

from typing import Any

import orjson
import tornado.web


def send_json(handler: tornado.web.RequestHandler, value: Any, status: int = 200) -> None:
    """Finish the request with `value` as JSON and `status`."""
    handler.set_status(status)
    handler.set_header("Content-Type", "application/json")
    handler.finish(orjson.dumps(value))
