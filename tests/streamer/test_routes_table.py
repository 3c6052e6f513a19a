"""docs/operations.md's Routes table names exactly the routes the Tornado apps serve."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import tornado.web

from bus.publisher import Publisher
from producers.intake import Intake
from producers.webhook import WebhookService
from producers.webhook import make_app as make_webhook_app
from store.db import make_engine, make_session_factory
from streamer.app import make_metrics_app
from streamer.services import Services
from web.errors import JsonErrors
from web.front import FrontDoor
from web.ratelimit import RateLimiter

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
METHODS = ("get", "head", "post", "put", "patch", "delete")
ROW = re.compile(r"^\| ((?:GET|HEAD|POST|PUT|PATCH|DELETE)(?:, (?:GET|HEAD|POST|PUT|PATCH|DELETE))*) \| `([^`]+)` \| (\w+) \|",
                 re.MULTILINE)


def documented() -> set[tuple[str, str, str]]:
    section = OPERATIONS.read_text().split("## Routes", 1)[1].split("\n## ", 1)[0]
    return {(method, re.sub(r"\{[^}]+\}", "*", path), process)
            for methods, path, process in ROW.findall(section) for method in methods.split(", ")}


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
        if issubclass(target, tornado.web.RedirectHandler):
            methods = {"GET"}
        found |= {(method, path, process) for method in methods}
    return found


@contextmanager
def webhook_app() -> Iterator[tornado.web.Application]:
    """The webhook's Application on an in-memory database, nothing served."""
    engine = make_engine("sqlite://")
    wakes = Publisher("tcp://127.0.0.1:9", send_timeout_ms=0, linger_ms=0)
    executor = ThreadPoolExecutor(1)
    try:
        yield make_webhook_app(WebhookService(Intake(make_session_factory(engine)), wakes, executor, RateLimiter(1.0)))
    finally:
        wakes.close()
        executor.shutdown()
        engine.dispose()


def test_routes_table_matches_the_streamer_and_webhook_apps(app: FrontDoor) -> None:
    with webhook_app() as webhook:
        actual = served(app.application, "streamer") | served(webhook, "webhook")
    assert documented() == actual


def test_every_handler_of_every_app_answers_its_errors_as_json(app: FrontDoor, services: Services) -> None:
    # CONTRACT section 3: errors are {"error", "message"}; Tornado's own handlers write an HTML page
    # (a POST to the webhook's /metrics or the streamer's /favicon.ico was one).
    with webhook_app() as webhook:
        apps = {"streamer": app.application, "streamer metrics": make_metrics_app(services), "webhook": webhook}
        handlers = {
            (name, target)
            for name, application in apps.items()
            for target in [*(rule.target for rule in application.wildcard_router.rules),
                           application.settings.get("default_handler_class")]
            if isinstance(target, type)
        }
    html = {(name, target.__name__) for name, target in handlers if not issubclass(target, JsonErrors)}
    assert len(handlers) > 15 and html == set()
