"""Admin-only REST endpoints: the store.actions of `tradestream-admin`, over HTTP, same JSON.

    POST   /api/admin/users                    {"username", "password", "is_admin"?}       201 create-user
    POST   /api/admin/users/{id}/password      {"password"}                                200 user → session_ended
    POST   /api/admin/users/{id}/deactivate                                                200 user → user_deactivated
    POST   /api/admin/users/{id}/activate                                                  200 user
    POST   /api/admin/accounts                 {"username", "name", "exchange", "capital"} 201 create-account
    POST   /api/admin/strategies               {"owner", "name", "group_name"}             201 create-strategy
    POST   /api/admin/links                    {"strategy_id", "account_id"}               201 link
    DELETE /api/admin/links                    same body (or query parameters)             200 unlink  → permission_revoked
    POST   /api/admin/strategies/{id}/deactivate                                           200 strategy → strategy_inactive
    POST   /api/admin/strategies/{id}/activate                                             200 strategy
    DELETE /api/admin/strategies/{id}                                                      200 {"strategy_id"} → strategy_deleted

Errors: 400 invalid_request, 401, 403 (not an admin), 404 not_found, 409 conflict, 413 body_too_large.
Actions commit, then PUSH their control message to `--ingress`; every streamer
(this one included) ends the affected streams when it arrives. If the bus is
down the change still stands and the periodic access re-check ends them.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import tornado.web
from sqlalchemy.orm import Session

from store import actions, rows
from store.errors import Conflict, InvalidInput, NotFound, StoreError
from store.models import User
from streamer.handlers import BaseHandler, parse_id
from streamer.services import Services
from web.bodies import BoundedBody
from web.errors import ApiError, ErrorTable

# (session, publish, body, id from the path) -> (status, JSON)
Action = Callable[[Session, actions.Publish, dict[str, Any], int | None], tuple[int, dict[str, Any]]]
# The HTTP face of store.errors.
STORE_ERRORS: ErrorTable = {
    NotFound: (404, "not_found"), Conflict: (409, "conflict"), InvalidInput: (400, "invalid_request"),
    StoreError: (400, "invalid_request"),
}


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = body.get(name, default)
    # bool is an int to Python, never to this API.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = {str: "a string", bool: "true or false", int: "a number", Decimal: "a number"}
        expected = names[kind[0] if isinstance(kind, tuple) else kind]
        raise InvalidInput(f"{name}: expected {expected}")
    return value


def _id(body: dict[str, Any], name: str) -> int:
    value = _field(body, name, (int, str))
    parsed = parse_id(str(value))
    if parsed is None:
        raise InvalidInput(f"{name}: expected an id, 1 <= id < 2^63")
    return parsed


def create_user(session: Session, publish: actions.Publish, body: dict[str, Any], _: int | None) -> tuple[int, dict[str, Any]]:
    user, token = actions.create_user(
        session, publish, _field(body, "username", str), _field(body, "password", str), _field(body, "is_admin", bool, False)
    )
    return 201, rows.user_json(user, token)


def _username(session: Session, user_id: int | None) -> str:
    user = session.get(User, user_id) if user_id is not None else None
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user.username


def set_password(session: Session, publish: actions.Publish, body: dict[str, Any], user_id: int | None) -> tuple[int, dict[str, Any]]:
    user = actions.set_password(session, publish, _username(session, user_id), _field(body, "password", str))
    return 200, rows.user_state_json(user)


def deactivate_user(session: Session, publish: actions.Publish, _: dict[str, Any], user_id: int | None) -> tuple[int, dict[str, Any]]:
    return 200, rows.user_state_json(actions.deactivate_user(session, publish, _username(session, user_id)))


def activate_user(session: Session, publish: actions.Publish, _: dict[str, Any], user_id: int | None) -> tuple[int, dict[str, Any]]:
    return 200, rows.user_state_json(actions.activate_user(session, publish, _username(session, user_id)))


def create_account(session: Session, publish: actions.Publish, body: dict[str, Any], _: int | None) -> tuple[int, dict[str, Any]]:
    account = actions.create_account(
        session, publish, _field(body, "username", str), _field(body, "name", str),
        _field(body, "exchange", str), _field(body, "capital", (int, Decimal, str)),
    )
    return 201, rows.account_json(account)


def create_strategy(session: Session, publish: actions.Publish, body: dict[str, Any], _: int | None) -> tuple[int, dict[str, Any]]:
    strategy, token = actions.create_strategy(
        session, publish, _field(body, "owner", str), _field(body, "name", str), _field(body, "group_name", str)
    )
    return 201, rows.new_strategy_json(strategy, token)


def link(session: Session, publish: actions.Publish, body: dict[str, Any], _: int | None) -> tuple[int, dict[str, Any]]:
    strategy_id, account_id = _id(body, "strategy_id"), _id(body, "account_id")
    actions.link(session, publish, strategy_id, account_id)
    return 201, rows.link_json(strategy_id, account_id)


def unlink(session: Session, publish: actions.Publish, body: dict[str, Any], _: int | None) -> tuple[int, dict[str, Any]]:
    strategy_id, account_id = _id(body, "strategy_id"), _id(body, "account_id")
    actions.unlink(session, publish, strategy_id, account_id)
    return 200, rows.link_json(strategy_id, account_id)


def deactivate(session: Session, publish: actions.Publish, _: dict[str, Any], strategy_id: int | None) -> tuple[int, dict[str, Any]]:
    assert strategy_id is not None  # the route has the id
    return 200, rows.strategy_json(actions.deactivate(session, publish, strategy_id))


def activate(session: Session, publish: actions.Publish, _: dict[str, Any], strategy_id: int | None) -> tuple[int, dict[str, Any]]:
    assert strategy_id is not None
    return 200, rows.strategy_json(actions.activate(session, publish, strategy_id))


def delete_strategy(session: Session, publish: actions.Publish, _: dict[str, Any], strategy_id: int | None) -> tuple[int, dict[str, Any]]:
    assert strategy_id is not None
    actions.delete_strategy(session, publish, strategy_id)
    return 200, {"strategy_id": strategy_id}


def _in_session(session: Session, action: Action, publish: actions.Publish, body: dict[str, Any], path_id: int | None) -> tuple[int, dict[str, Any]]:
    try:
        return action(session, publish, body, path_id)
    except StoreError as exc:
        raise ApiError.of(exc, STORE_ERRORS) or exc from None


@tornado.web.stream_request_body
class AdminHandler(BoundedBody, BaseHandler):
    """One admin endpoint; `actions` maps its HTTP methods to store actions (a body past 64 KiB: 413, checked first)."""

    def initialize(self, services: Services, actions: dict[str, Action]) -> None:  # type: ignore[override]
        super().initialize(services)
        self.actions = actions

    async def post(self, path_id: str | None = None) -> None:
        await self._run(path_id)

    async def delete(self, path_id: str | None = None) -> None:
        await self._run(path_id)

    async def _run(self, raw_id: str | None) -> None:
        raw_body = self.body()  # as the webhook's checks, the body's size comes first
        await self.admin()
        action = self.actions.get(self.request.method or "")
        if action is None:
            raise ApiError(405, "method_not_allowed", "Not on this endpoint.")
        path_id = None
        if raw_id is not None:
            path_id = parse_id(raw_id)
            if path_id is None:
                raise ApiError(400, "invalid_request", "The id must be an integer, 1 <= id < 2^63.")
        body = self._body(raw_body)
        status, result = await self.services.database.run(_in_session, action, self.services.publish, body, path_id)
        self.send_json(result, status)

    def _body(self, raw: bytes) -> dict[str, Any]:
        if raw:
            return self.json_body(raw)
        # DELETE with a body is unusual for some clients: query parameters serve too.
        return {name: values[-1].decode("utf-8", "replace") for name, values in self.request.query_arguments.items()}


def admin_routes(services: Services) -> list[tuple[str, type, dict[str, Any]]]:
    """The routes of the admin API."""

    def route(pattern: str, **methods: Action) -> tuple[str, type, dict[str, Any]]:
        return pattern, AdminHandler, {"services": services, "actions": methods}

    return [
        route(r"/api/admin/users", POST=create_user),
        route(r"/api/admin/users/([^/]+)/password", POST=set_password),
        route(r"/api/admin/users/([^/]+)/deactivate", POST=deactivate_user),
        route(r"/api/admin/users/([^/]+)/activate", POST=activate_user),
        route(r"/api/admin/accounts", POST=create_account),
        route(r"/api/admin/strategies", POST=create_strategy),
        route(r"/api/admin/links", POST=link, DELETE=unlink),
        route(r"/api/admin/strategies/([^/]+)/deactivate", POST=deactivate),
        route(r"/api/admin/strategies/([^/]+)/activate", POST=activate),
        route(r"/api/admin/strategies/([^/]+)", DELETE=delete_strategy),
    ]
