"""Hostile HTTP for property-based tests against the real servers: generated requests, and what every answer must be.

The product's rule: hostile input gets a clear 4xx and costs the server little;
nothing an outsider sends produces a 500, a hang, unbounded memory or a log
flood. For one request, `check_answer` and `LogWatch` are that rule:

- the server answers within ANSWER_S (or, for a request that is not HTTP,
  closes the connection), with a status the endpoint documents;
- an error is the contract's JSON `{"error", "message"[, "field"]}`;
- the request logs nothing at WARNING or above, and at most
  MAX_LOG_BYTES_PER_REQUEST at INFO (an outsider decides how many requests there are);
- afterwards the server still answers a normal request (`still_serving`).

The servers are the ones the processes run (streamer.server.make_server,
producers.webhook.make_server) on a real socket, driven from synchronous
hypothesis tests through `io_loop.run_sync`. HOSTILE_SETTINGS keeps each test
deterministic (derandomized, no example database) and small.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

ANSWER_S = 5.0
# Tornado's max_header_size: a longer header block is answered 431 (web/overflow.py).
MAX_HEADER_BYTES = 65536
MAX_LOG_BYTES_PER_REQUEST = 600
# Derandomized: the same examples on every run and machine (a CI failure reproduces locally);
# the fixtures (a server, a database) are shared by the examples on purpose.
HOSTILE_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Answer:
    """What the server sent back: its status (None when it closed without answering), headers, body."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def raw_request(method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]] = (), body: bytes = b"") -> bytes:
    """An HTTP/1.1 request as bytes, exactly as given (nothing escaped); it asks the server to close afterwards."""
    lines = [method.encode("latin-1") + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def exchange(port: int, request: bytes) -> Answer:
    """Send `request` on a new connection and read one answer (a stream's first frames); fails after ANSWER_S."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(_read_answer(reader, head_only=request.startswith(b"HEAD ")), ANSWER_S)
    except ConnectionResetError:  # closed with part of the request unread (over a size limit)
        return Answer(None)
    finally:
        writer.close()


async def _read_answer(reader: asyncio.StreamReader, *, head_only: bool) -> Answer:
    status_line = "HTTP/1.1 100"
    while status_line.split(" ")[1].startswith("1"):  # a 100 Continue (the request sent Expect) precedes the answer
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return Answer(None)  # closed without an answer
        status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    status = int(status_line.split(" ")[1])
    if headers.get("content-type") == "text/event-stream":
        # A stream stays open: its first two frames (`retry:` and the `connection` event) come at once.
        body = b""
        while body.count(b"\n\n") < 2:
            chunk = await reader.read(4096)
            if not chunk:
                break
            body += chunk
        return Answer(status, headers, body)
    if head_only:
        return Answer(status, headers)
    length = headers.get("content-length")
    body = await reader.readexactly(int(length)) if length is not None else await reader.read()
    return Answer(status, headers, body)


def check_answer(answer: Answer, allowed: set[int], *, field_on_400: bool = False, bad_http: bool = False) -> None:
    """The answer has an allowed status and, if an error, the contract's JSON body.

    With `bad_http` (the request may break HTTP/1.1 itself: control bytes in a header, a
    Content-Length that is not a number, a body over the server's limit) the read loop's
    JSON 400 `invalid_request` (no `field`) is an answer too, and so is closing the
    connection: no handler ran.
    (Headers over the limit are answered 431: web/overflow.py.)
    """
    if currently_in_test_context():  # what the examples met, for --hypothesis-show-statistics
        event(f"status {answer.status}" + (f" {answer.json().get('error')}" if answer.body.startswith(b'{"error"') else ""))
    if bad_http and answer.status is None:
        return
    if bad_http and answer.status == 400 and answer.body.startswith(b'{"error":"invalid_request"'):
        check_error_body(answer)  # the read loop's JSON 400 (web/readloop.py): no handler ran, so no field
        return
    assert answer.status is not None, "the server closed the connection without an answer"
    assert answer.status in allowed, f"status {answer.status} not in {sorted(allowed)}: {answer.body[:300]!r}"
    if answer.status >= 400:
        check_error_body(answer, field_on_400 and answer.status == 400)


def headers_too_large(request: bytes, answer: Answer) -> bool:
    """Whether `request`'s header block is over the server's limit; if it is, the answer must be the 431."""
    if len(request.partition(b"\r\n\r\n")[0]) + 4 <= MAX_HEADER_BYTES:
        return False
    assert answer.status == 431 and answer.json()["error"] == "headers_too_large", answer
    return True


def check_error_body(answer: Answer, needs_field: bool = False) -> None:
    """`{"error": <code>, "message": <text>}` (+ `"field"` where the webhook names one), as JSON."""
    assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
    body = answer.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    assert set(body) <= {"error", "message", "field"}, body
    if needs_field:
        assert isinstance(body.get("field"), str), body


class LogWatch(logging.Handler):
    """Every record of the process while it is installed: none at WARNING+, few bytes at INFO per request."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def check(self, requests: int = 1) -> None:
        loud = [r for r in self.records if r.levelno >= logging.WARNING]
        assert not loud, f"logged: {[f'{r.levelname} {r.name}: {r.getMessage()[:300]}' for r in loud]}"
        size = sum(len(r.getMessage()) for r in self.records)
        assert size <= MAX_LOG_BYTES_PER_REQUEST * requests, (
            f"{size} bytes of log for {requests} request(s): {[r.getMessage()[:200] for r in self.records]}"
        )


@contextmanager
def watched_log() -> Iterator[LogWatch]:
    """A LogWatch on the root logger, which lets INFO through meanwhile (records are checked, not printed)."""
    watch = LogWatch()
    root = logging.getLogger()
    level = root.level
    root.addHandler(watch)
    root.setLevel(logging.INFO)
    try:
        yield watch
    finally:
        root.removeHandler(watch)
        root.setLevel(level)


# --- values an outsider may send -------------------------------------------------------------------------

# Numbers as text, each a known trap: exponents Decimal would compute with, what a double cannot hold,
# signed zeros, words Decimal() accepts, digits that are not ASCII, spacing and separators.
TRAP_NUMBERS = [
    "1e999999999", "1e999999999999999999", "-1e999999999", "0.1e-99999", "1e-999999999", "9e+999999999999999999",
    "NaN", "-NaN", "sNaN", "nan", "Infinity", "-Infinity", "inf", "-0", "-0.0", "0", "0e10", "0.0",
    "1e308", "1.7976931348623157e308", "1.8e308", "4.9e-324", "2.4e-324", "1e-12", "1e12", "1000000000000.001",
    "0.000000000001", "0.0000000000005", "0.005", "1e-7", "100", "100.0000001", "0.000001", "0.0000009",
    "+5", "5.", ".5", "05", "0x10", "1_000", " 5", "5 ", "\t5", "٥", "５", "1,5", "1e", "e5", "--5", "5e+", "1/2",
    "9" * 40, "1." + "0" * 80 + "1", "1" + "0" * 400, "0." + "0" * 400 + "1", "123456789012345678901234.5",
    "18446744073709551616", "-9223372036854775809", "9223372036854775808",
]
# The same, where the JSON grammar lets them be numbers (the rest only travel as strings).
JSON_NUMBER_TRAPS = [
    "1e999999999", "-1e999999999", "0.1e-99999", "1e-999999999", "-0", "-0.0", "0", "0e10", "1e308",
    "1.7976931348623157e308", "1.8e308", "4.9e-324", "2.4e-324", "1e-12", "1e12", "0.000000000001", "0.005",
    "100", "100.0000001", "0.000001", "9" * 40, "1." + "0" * 80 + "1", "1" + "0" * 400, "0." + "0" * 400 + "1",
    "18446744073709551616", "-9223372036854775809", "9223372036854775808", "5E+3", "5e-0", "1E400",
]


class Big(bytes):
    """Bytes whose repr stays short, for the huge values below (a failing example is printed)."""

    def __repr__(self) -> str:
        return f"Big({bytes(self[:8])!r} ... {len(self)} bytes)"


def shown_short(data: bytes) -> bytes:
    """`data`, as a Big when it is long."""
    return Big(data) if len(data) > 1000 and not isinstance(data, Big) else data


class BigText(str):
    """A str whose repr stays short."""

    def __repr__(self) -> str:
        return f"BigText({str(self[:8])!r} ... {len(self)} chars)"


class RawJson(str):
    """JSON text put into a document as it is (a number Python's json would not write, say)."""


@dataclass(frozen=True)
class Pairs:
    """A JSON object as its list of pairs, so that a key may repeat."""

    items: tuple[tuple[str, Any], ...]


def render(value: Any) -> str:
    """The JSON text of a document of RawJson, Pairs, dicts, lists and scalars."""
    if isinstance(value, RawJson):
        return str(value)
    if isinstance(value, Pairs):
        return "{" + ",".join(json.dumps(k) + ":" + render(v) for k, v in value.items) + "}"
    if isinstance(value, dict):
        return render(Pairs(tuple(value.items())))
    if isinstance(value, list | tuple):
        return "[" + ",".join(render(item) for item in value) + "]"
    return json.dumps(value)


# Text an outsider may write: any code point (lone surrogates and NUL too, escaped by json.dumps),
# right-to-left marks, combining characters, long runs.
hostile_text = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(categories=["Cs", "Cc", "Cf", "Mn", "Zl", "Zp", "Nd", "Co"]), max_size=30),
    st.sampled_from(["", " ", "\x00", "\ud800", "\udfff", "\u202e", "e\u0301", "\ufeff", "😀" * 8, "A" * 300,
                     BigText("a" * 70_000), "../../etc/passwd", "%00", "\r\nX-Injected: 1", "<script>", "BTC/USDT\n"]),
)
trap_number_text = st.one_of(st.sampled_from(TRAP_NUMBERS), st.decimals().map(str), st.floats().map(repr))
json_numbers = st.one_of(
    st.sampled_from(JSON_NUMBER_TRAPS).map(RawJson),
    st.integers(),
    st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: RawJson(format(d, "E"))),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), json_numbers, trap_number_text, hostile_text)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(hostile_text, children, max_size=4),
        st.lists(st.tuples(st.sampled_from(["a", "token", "price"]), children), min_size=2, max_size=3).map(
            lambda items: Pairs(tuple(items))),
    ),
    max_leaves=12,
)


def nested(depth: int, inner: str = "1") -> str:
    """`inner` inside `depth` arrays."""
    return "[" * depth + inner + "]" * depth


# Whole bodies that break JSON itself: invalid UTF-8, a BOM, deep nesting, truncation, NaN, garbage.
broken_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([
        b"", b"\xff\xfe{}", b"\xef\xbb\xbf{}", b'{"a": "\xff"}', b'{"a": "\xed\xa0\x80"}', b'{"a": 1',
        b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b"[1,]", b"{'a': 1}", b'{"a": 1}{"b": 2}',
        b"null", b"[]", b'"text"', b"1e999999999", nested(33).encode(), Big(nested(100_000).encode()[:60_000]),
        Big(b'{"a":' * 10_000), b'{"\\ud800": 1}', b'{"a": "\\u0000"}', b'{"a": 01}', b'{"a": .5}', b'{"a": 0x10}',
        b"\x00" * 100, b'{"a": 1}\x00', Big(b" " * 60_000),
    ]),
)
# Percent-encoded text for URLs: malformed escapes, NUL, bytes that are not UTF-8, overlong forms, dot segments.
url_pieces = st.one_of(
    st.sampled_from([Big(b"a" * 3000), Big(b"%ff" * 2000), Big(b"a" * 15_000)]),  # sizes: what a log line may carry
    st.text(max_size=20).map(lambda text: quote(text, safe="%&=+;/.").encode()),
    st.binary(max_size=12).map(lambda data: "".join(f"%{b:02x}" for b in data).encode()),
    st.sampled_from([
        b"%", b"%%", b"%g", b"%0", b"%00", b"%ff", b"%c0%ae", b"%e0%80%ae", b"%ed%a0%80", b"..", b"%2e%2e", b"%2e%2e%2f",
        b"..%2f", b"%5c..%5c", b"//", b"%2f", b"+", b"%20", Big(b"a" * 3000), b"1", b"0", b"-1", b"01", b"1e3",
        b"9223372036854775807", b"9223372036854775808", b"%31", b"\xd9\xa1", b"%d9%a1", b"1%00", b"1;2", b"1&strategy_id=2",
    ]),
)


def changes_of(fields: Sequence[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[tuple[str, str, Any]]]:
    """What may be done to a valid document: a field set to anything, dropped or repeated, unknown fields added."""
    return st.lists(
        st.one_of(
            st.tuples(st.just("set"), st.sampled_from(fields), values),
            st.tuples(st.just("drop"), st.sampled_from(fields), st.none()),
            st.tuples(st.just("repeat"), st.sampled_from(fields), values),
            st.tuples(st.just("extra"), hostile_text, json_values),
        ),
        max_size=4,
    )


def mutated(base: dict[str, Any], changes: list[tuple[str, str, Any]]) -> Pairs:
    """`base` with `changes` (changes_of) applied, as pairs: a repeated key stays repeated."""
    items = list(base.items())
    for action, name, value in changes:
        if action == "set":
            items = [(k, v) for k, v in items if k != name] + [(name, value)]
        elif action == "drop":
            items = [(k, v) for k, v in items if k != name]
        else:
            items.append((name, value))
    return Pairs(tuple(items))

