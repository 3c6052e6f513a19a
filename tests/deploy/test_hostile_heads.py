"""Every HTTP listener of the stack, over real sockets, against hostile request heads: the contract's JSON errors.

The listeners are those supervisord.conf runs: the streamer's port (its API, stats, metrics, admin, login,
static files, the stream), a streamer's own metrics port, the webhook's port, and the metrics ports of
orders and positions. A malformed head is a JSON 400 `invalid_request`, headers over 64 KiB a JSON 431
`headers_too_large` (CONTRACT section 1), never Tornado's bare `400 Bad Request` or an HTML page; many
headers within the limit are an ordinary answer.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.deploy.stack import Stack
from tests.hostile import Answer, check_error_body, exchange, raw_request

pytestmark = pytest.mark.xdist_group("deploy-hostile-heads")

# (listener, target): the streamer's port by path, then the other listeners.
TARGETS = [
    ("streamer", b"/api/events/stats"), ("streamer", b"/metrics"), ("streamer", b"/api/admin/users/1/password"),
    ("streamer", b"/api/login"), ("streamer", b"/static/tradestream.js"), ("streamer", b"/"),
    ("streamer", b"/api/events/stream?strategy_id=1"), ("streamer", b"/healthz"),
    ("streamer-metrics", b"/metrics"), ("webhook", b"/api/webhook"), ("webhook", b"/metrics"),
    ("orders-metrics", b"/metrics"), ("positions-metrics", b"/metrics"),
]


def head_bad_request_line(target: bytes) -> bytes:
    return b"GET " + target + b" NOT-HTTP\r\nHost: 127.0.0.1\r\n\r\n"


def head_bad_header_line(target: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nthis line has no colon\r\nConnection: close\r\n\r\n"


def head_huge_header(target: bytes) -> bytes:
    return raw_request("GET", target, [(b"X-Big", b"b" * 70_000)])


def head_many_headers_over_the_limit(target: bytes) -> bytes:
    return raw_request("GET", target, [(b"X-H%d" % i, b"v" * 40) for i in range(2000)])


def head_many_headers_within_the_limit(target: bytes) -> bytes:
    return raw_request("GET", target, [(b"X-H%d" % i, b"v") for i in range(1000)])


# (name, request head, expected status, expected error code; None: any answer, JSON if an error)
HEADS = [
    ("bad-request-line", head_bad_request_line, 400, "invalid_request"),
    ("bad-header-line", head_bad_header_line, 400, "invalid_request"),
    ("huge-single-header", head_huge_header, 431, "headers_too_large"),
    ("many-headers-over-64KiB", head_many_headers_over_the_limit, 431, "headers_too_large"),
    ("many-headers-within-64KiB", head_many_headers_within_the_limit, None, None),
]


@pytest.fixture(scope="module")
def ports(stack: Stack) -> dict[str, int]:
    """Each listener's port; the metrics ports (0 in the stack: any free one) from the programs' start-up lines."""
    def logged(name: str, pattern: str) -> int:
        match = re.search(pattern, (stack.root / "var" / "log" / f"{name}.log").read_text())
        assert match, f"no metrics port in {name}.log"
        return int(match[1])

    return {
        "streamer": int(stack.env["TRADESTREAM_PORT"]), "webhook": int(stack.env["TRADESTREAM_WEBHOOK_PORT"]),
        "streamer-metrics": logged("streamer-0", r"metrics_port=(\d+)"),
        "orders-metrics": logged("orders", r"metrics port (\d+)"),
        "positions-metrics": logged("positions", r"metrics port (\d+)"),
    }


@pytest.mark.parametrize(("name", "head", "status", "code"), [pytest.param(*case, id=case[0]) for case in HEADS])
def test_every_listener_answers_hostile_heads_with_the_contracts_json_error(
        stack: Stack, ports: dict[str, int], name: str, head: object, status: int | None, code: str | None) -> None:
    async def answers() -> list[tuple[str, bytes, Answer]]:
        return [(listener, target, await exchange(ports[listener], head(target)))  # type: ignore[operator]
                for listener, target in TARGETS]

    wrong = []
    for listener, target, answer in asyncio.run(answers()):
        try:
            assert answer.status is not None, "closed without an answer"
            if status is not None:
                assert answer.status == status, f"status {answer.status}: {answer.headers} {answer.body[:200]!r}"
            if answer.status >= 400:
                check_error_body(answer)
            if code is not None:
                assert answer.json()["error"] == code, answer.body[:200]
        except (AssertionError, ValueError) as exc:
            wrong.append(f"{listener} {target.decode()}: {exc}")
    assert not wrong, "\n".join(wrong)
    assert stack.request("GET", "/healthz")[0] == 200  # and everything still serves
