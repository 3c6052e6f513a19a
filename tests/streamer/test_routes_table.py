"""docs/operations.md's Routes table names exactly the routes the Tornado apps serve."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tornado.web

from bus.publisher import Publisher
from producers.intake import Intake
from producers.webhook import WebhookService
from producers.webhook import make_app as make_webhook_app
from store.db import make_engine, make_session_factory
from web.front import FrontDoor
from web.ratelimit import RateLimiter

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
METHODS = ("get", "post", "put", "patch", "delete")
ROW = re.compile(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \| (\w+) \|", re.MULTILINE)


def documented() -> set[tuple[str, str, str]]:
    section = OPERATIONS.read_text().split("## Routes", 1)[1].split("\n## ", 1)[0]
    return {(method, re.sub(r"\{[^}]+\}", "*", path), process) for method, path, process in ROW.findall(section)}


def served(app: tornado.web.Application, process: str) -> set[tuple[str, str, str]]:
    """(method, path, process) of every rule but the catch-all 404s; a group in the pattern becomes `*`."""
    found = set()
    for rule in app.wildcard_router.rules:
        target = rule.target
        if not isinstance(target, type) or target.__name__ == "NotFoundHandler":
            continue
        pattern = rule.matcher.regex.pattern.rstrip("$")  # type: ignore[attr-defined]
        path = re.sub(r"\([^)]*\)", "*", pattern).replace("\\.", ".")
        path = "/" if path == "/*" else path
        actions = (rule.target_kwargs or {}).get("actions")
        if actions is not None:  # the admin API: one handler, methods by route
            methods = set(actions)
        else:
            methods = {m.upper() for m in METHODS if getattr(target, m) is not getattr(tornado.web.RequestHandler, m)}
        if target is tornado.web.RedirectHandler:
            methods = {"GET"}
        found |= {(method, path, process) for method in methods}
    return found


def test_routes_table_matches_the_streamer_and_webhook_apps(app: FrontDoor) -> None:
    engine = make_engine("sqlite://")
    wakes = Publisher("tcp://127.0.0.1:9", send_timeout_ms=0, linger_ms=0)
    executor = ThreadPoolExecutor(1)
    try:
        service = WebhookService(Intake(make_session_factory(engine)), wakes, executor, RateLimiter(1.0))
        actual = served(app.application, "streamer") | served(make_webhook_app(service), "webhook")
    finally:
        wakes.close()
        executor.shutdown()
        engine.dispose()
    assert documented() == actual
