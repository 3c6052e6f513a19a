"""JSON answers of both Tornado apps, encoded by orjson like every other JSON of the codebase.

Tornado's `finish(dict)` would use the standard library's encoder; this writer
keeps one JSON library (and its number and string forms) for every answer.

Where the standard library's json stays, on purpose:
- `web/jsonbody.py`, the strict reading of request bodies from outside (webhook,
  login, admin): it must see duplicate keys, which orjson drops without a word;
  `producers/signals.py` quotes values in its messages with the same library;
- `producers/samples/make_sample.py`: orjson has no `separators`, and the sample
  log's spacing is its format (a test regenerates it byte for byte);
- the tests' HTTP clients, an independent decoder of what orjson writes.
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
