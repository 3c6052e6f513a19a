"""The streamer's settings: one frozen dataclass, read once in `main`.

Flags win over `TRADESTREAM_*` variables, which win over the defaults of
CONTRACT section 1. Without `--secret`, the cookie-signing secret is read from
`var/secret`, created on first use (atomically, so two streamers started
together end up with the same one and accept each other's cookies).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bus import endpoints, kinds
from bus.process import SettingsParser, metrics_port_setting, required_setting, setting
from bus.security import bus_keys_setting
from store.db import DEFAULT_DATABASE_URL, sqlalchemy_url
from web.server import BODY_TIMEOUT_S, HEADER_TIMEOUT_S

SECRET_FILE = Path("var/secret")
STATIC_PATH = str(Path(__file__).with_name("static"))


@dataclass(frozen=True, slots=True)
class StreamerConfig:
    """Settings of one streamer process."""

    secret: str = required_setting(help="cookie-signing secret", kind=kinds.text, shown=f"kept in {SECRET_FILE}")
    database_url: str = setting(DEFAULT_DATABASE_URL, kind=sqlalchemy_url, help="SQLAlchemy database URL")
    ingress: str = setting(endpoints.INGRESS, kind=kinds.zmq_endpoint, help="broker ingress to PUSH control messages to")
    publish: str = setting(endpoints.PUBLISH, kind=kinds.zmq_endpoint, help="broker XPUB endpoint to subscribe to")
    replay: str = setting(endpoints.REPLAY, kind=kinds.zmq_endpoint, help="broker ROUTER endpoint for replay requests")
    bus_keys: str = bus_keys_setting()
    host: str = setting("127.0.0.1", help="HTTP address to listen on")
    port: int = setting(8080, kind=kinds.tcp_port, help="HTTP port (0: any free port, logged)")
    heartbeat: float = setting(10.0, kind=kinds.positive_float, help="seconds between heartbeat events")
    client_buffer: int = setting(50, kind=kinds.positive_int, help="frames a client may fall behind before it is dropped")
    max_streams_per_user: int = setting(20, kind=kinds.positive_int, help="open streams per user (429 beyond)")
    recheck: float = setting(60.0, kind=kinds.positive_float, help="seconds between access re-checks of open streams")
    reuse_port: bool = setting(False, help="SO_REUSEPORT, so several streamer processes share the port")
    metrics_port: int | None = metrics_port_setting()
    # The bus reader's wake-ups coalesced (bus/coalesce.py): a lone event is read at once, the ones after it
    # within this window in one batch. Off by default: 2 ms took 19 % off the CPU per delivery at 10,000 streams
    # and 2,000 events/s but put 1.5 ms on every event's median; 1 ms cost 9-36 % more at 500 events/s
    # (docs/benchmarks.md, "Sixth session").
    bus_coalesce: float = setting(0.0, kind=kinds.non_negative_float, help="seconds the bus reader rests after a read that returned events, to take what arrives meanwhile in one wake-up (0: read on every edge)")
    event_loop: str = setting("asyncio", kind=kinds.one_of("uvloop", "asyncio"), help="the event loop: uvloop (libuv, in C) or asyncio's own")
    gc_threshold: int = setting(700, kind=kinds.positive_int, help="allocations between two young-generation collections of the cyclic GC (Python's default 700)")
    no_gc_freeze: bool = setting(False, help="leave start-up's objects to the GC (by default gc.freeze() moves them out of its sight once started)")
    header_timeout: float = setting(HEADER_TIMEOUT_S, kind=kinds.positive_float, help="seconds a request's headers may take (also: a keep-alive connection's idle time)")
    body_timeout: float = setting(BODY_TIMEOUT_S, kind=kinds.positive_float, help="seconds a request's body may take")
    # Login attempts per client address and per username, refilled over login_window (CONTRACT section 3).
    login_per_address: int = setting(60, kind=kinds.positive_int, help="login attempts per client address per --login-window (429 beyond)")
    login_per_user: int = setting(10, kind=kinds.positive_int, help="login attempts per username per --login-window (429 beyond)")
    login_window: float = setting(300.0, kind=kinds.positive_float, help="seconds over which the login limits refill")
    # Only behind a reverse proxy that sets them: any client can send these headers (web/proxy.py).
    trust_proxy: bool = setting(False, help="believe X-Forwarded-For (login limit per address) and X-Forwarded-Proto (Secure cookie) of a reverse proxy")
    log_level: str = "INFO"  # the --log-level every process has
    static_path: str = STATIC_PATH
    # Not flags: how long a new stream waits for its subscription and any request for a broker answer (a
    # snapshot's head, a replay), the database threads, and how long answers about credentials are cached
    # (streamer/auth.py).
    bus_timeout: float = 5.0
    database_threads: int = 4
    credentials_ttl: float = 5.0


def load_secret(path: Path = SECRET_FILE) -> str:
    """The secret kept in `path`, created with a random one if missing."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(secrets.token_urlsafe(48) + "\n")
    scratch.chmod(0o600)
    try:
        os.link(scratch, path)  # atomic: the first process to get here wins
    except FileExistsError:
        pass
    finally:
        scratch.unlink()
    return path.read_text().strip()


def parse_config(argv: list[str] | None, environ: Mapping[str, str] | None = None) -> StreamerConfig:
    """Read flags and TRADESTREAM_* variables; bad values exit 2 with the reason."""
    parser = SettingsParser(
        StreamerConfig,
        prog="tradestream-streamer",
        description="Serves the SSE event stream, REST snapshots, login, the admin API and the dashboard.",
        environ=environ,
    )
    values = parser.values(parser.parse_args(argv))
    if not values.get("secret"):  # neither flag nor variable (or an empty one): the kept secret
        try:
            values["secret"] = load_secret()
        except OSError as exc:
            parser.error(f"cannot read or create {SECRET_FILE}: {exc}")
    if not values["secret"]:
        parser.error(f"{SECRET_FILE} is empty: remove it or pass --secret")
    return StreamerConfig(**values)
