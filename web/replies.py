"""JSON answers of both Tornado apps, encoded by orjson like every other JSON of the codebase.

Tornado's `finish(dict)` would use the standard library's encoder; this writer
keeps one JSON library (and its number and string forms) for every answer.

Where the standard library's json stays, on purpose:
- request bodies from outside that must be checked for duplicate keys (issue 11:
  the webhook's `producers/signals.py:parse_json`, which also quotes values in
  its messages with it; login and admin bodies move there too), and
  `producers/intake.py:payload_text`, which re-encodes what
  that parser accepted (orjson refuses integers beyond 64 bits: a 500 on hostile input);
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
