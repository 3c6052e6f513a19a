"""Request bodies read as they arrive and kept up to MAX_BODY bytes; a larger one is a JSON 413 `body_too_large`.

    @stream_request_body
    class Handler(BoundedBody, JsonErrors, RequestHandler):
        async def post(self) -> None:
            body = self.body()  # raises TOO_LARGE (web.errors writes it) past MAX_BODY

The webhook's signals and the streamer's login and admin API bodies (CONTRACT sections 3 and 5).
A body over MAX_BODY but under DISCARD_CAP is read and thrown away before the
413 goes out, so the client reads the answer instead of a connection reset; a
larger declared body is answered at once and the connection closed. The server's
own max_body_size stays MAX_BODY: only these handlers let a larger one be read
(Tornado answers a bare 400 past it), and none is ever buffered.
"""

from __future__ import annotations

from typing import Any

from web.errors import ApiError, send_error_json

MAX_BODY = 64 * 1024
DISCARD_CAP = 1024 * 1024
TOO_LARGE = ApiError(413, "body_too_large", f"the body exceeds {MAX_BODY} bytes")


class BoundedBody:
    """RequestHandler mixin, with @stream_request_body: the body collected up to MAX_BODY, TOO_LARGE past it."""

    _chunks: list[bytes]
    _size: int

    def prepare(self: Any) -> None:
        self._chunks, self._size = [], 0
        declared = self.request.headers.get("Content-Length")
        size = int(declared) if declared is not None and declared.isdigit() else None
        if size is not None and size > DISCARD_CAP:
            self._size = size
            send_error_json(self, TOO_LARGE)
        elif (size is None or size > MAX_BODY) and self.request.connection is not None:
            # Past the server's max_body_size Tornado answers a bare 400: let it read this one.
            self.request.connection.set_max_body_size(DISCARD_CAP)

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > MAX_BODY:
            self._chunks.clear()
        else:
            self._chunks.append(chunk)

    @property
    def too_large(self) -> bool:
        """Whether the body exceeded MAX_BODY (its 413 may already be sent: `_finished`)."""
        return self._size > MAX_BODY

    def body(self) -> bytes:
        """The whole body; TOO_LARGE when it exceeded MAX_BODY."""
        if self.too_large:
            raise ApiError(TOO_LARGE.status_code, TOO_LARGE.code, TOO_LARGE.message)  # a new one: a raise adds to its traceback
        return b"".join(self._chunks)
