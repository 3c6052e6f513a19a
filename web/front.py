"""A few requests served in front of a Tornado Application's routing, every other one by the Application.

The streamer's connect burst is CPU-bound, and most of a connect's CPU was
Tornado's request path (docs/benchmarks.md, issue 13): routing, the
`_HandlerDelegate`, the RequestHandler and its `_execute`, the
HTTPServerRequest with its deep copy of the query arguments. `FrontDoor` sits
where the Application sits (an HTTPServerConnectionDelegate given to the
HTTPServer), so the HTTP/1 read loop is the same for every request: header
and body timeouts, size limits, tolerant headers and keep-alive all stay
web/server.py's and Tornado's. Only after a request's headers have arrived
does it choose: an exact (method, path) of `routes` gets that route's own
message delegate (unless the route declines it: None), anything else the
Application's, which sees every call it would have seen without the front.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from tornado import httputil

from web.readloop import checks_departure

# The message delegate of one request whose method and path matched, from its start line and headers; None: the Application's.
FrontRoute = Callable[
    [httputil.RequestStartLine, httputil.HTTPHeaders, httputil.HTTPConnection], httputil.HTTPMessageDelegate | None
]


class FrontDoor(httputil.HTTPServerConnectionDelegate):
    """Serves `routes` ((method, path) → FrontRoute) itself, and every other request by `application`."""

    def __init__(self, application: httputil.HTTPServerConnectionDelegate,
                 routes: Mapping[tuple[str, str], FrontRoute]) -> None:
        self.application = application
        self.routes = dict(routes)

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return _Dispatch(self, server_conn, request_conn)


class _Dispatch(httputil.HTTPMessageDelegate):
    """One request: chooses its delegate once the headers are in, then forwards everything to it."""

    def __init__(self, front: FrontDoor, server_conn: object, request_conn: httputil.HTTPConnection) -> None:
        self.front = front
        self.server_conn = server_conn
        self.request_conn = request_conn
        self.delegate: httputil.HTTPMessageDelegate | None = None

    @property
    def checks_departure(self) -> bool:
        """The chosen delegate's answer to web/readloop.py's question: does it look for a departed client itself?"""
        return self.delegate is not None and checks_departure(self.delegate)

    def headers_received(
        self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine, headers: httputil.HTTPHeaders
    ) -> Awaitable[None] | None:
        if isinstance(start_line, httputil.RequestStartLine):
            # Tornado's routing matches the path before "?" as it came, not percent-decoded: so does this.
            route = self.front.routes.get((start_line.method, start_line.path.partition("?")[0]))
            if route is not None:
                self.delegate = route(start_line, headers, self.request_conn)
        if self.delegate is None:
            self.delegate = self.front.application.start_request(self.server_conn, self.request_conn)
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        assert self.delegate is not None  # Tornado calls headers_received first
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        assert self.delegate is not None  # Tornado calls headers_received first
        self.delegate.finish()

    def on_connection_close(self) -> None:
        if self.delegate is not None:
            self.delegate.on_connection_close()
