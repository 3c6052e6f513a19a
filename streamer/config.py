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

from bus import endpoints
from bus.process import SettingsParser, env_name, positive_float, positive_int
from store.admin import database_url, endpoint
from store.db import DEFAULT_DATABASE_URL

SECRET_FILE = Path("var/secret")
STATIC_PATH = str(Path(__file__).with_name("static"))


@dataclass(frozen=True, slots=True)
class StreamerConfig:
    """Settings of one streamer process."""

    secret: str
    database_url: str = DEFAULT_DATABASE_URL
    ingress: str = endpoints.INGRESS
    publish: str = endpoints.PUBLISH
    replay: str = endpoints.REPLAY
    host: str = "127.0.0.1"
    port: int = 8080
    heartbeat: float = 10.0
    client_buffer: int = 50
    max_streams_per_user: int = 20
    recheck: float = 60.0
    reuse_port: bool = False
    log_level: str = "INFO"
    static_path: str = STATIC_PATH
    # Not flags: how long a new stream waits for its subscription, and the database threads.
    bus_timeout: float = 5.0
    database_threads: int = 4


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 meaning "any free one"."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(text)
    return value


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


def _parser(environ: Mapping[str, str] | None) -> SettingsParser:
    parser = SettingsParser(
        prog="tradestream-streamer",
        description="Serves the SSE event stream, REST snapshots, login, the admin API and the dashboard.",
        environ=environ,
    )
    d = StreamerConfig(secret="")
    parser.add_setting("--database-url", default=d.database_url, type=database_url, help="SQLAlchemy database URL")
    # Not add_setting: its default (the variable's value) would be printed by --help.
    parser.add_argument("--secret", default=None, help=f"cookie-signing secret (env {env_name('--secret')}; default: kept in {SECRET_FILE})")
    parser.add_setting("--ingress", default=d.ingress, type=endpoint, help="broker ingress to PUSH control messages to")
    parser.add_setting("--publish", default=d.publish, type=endpoint, help="broker XPUB endpoint to subscribe to")
    parser.add_setting("--replay", default=d.replay, type=endpoint, help="broker ROUTER endpoint for replay requests")
    parser.add_setting("--host", default=d.host, help="HTTP address to listen on")
    parser.add_setting("--port", default=d.port, type=port_number, help="HTTP port (0: any free port)")
    parser.add_setting("--heartbeat", default=d.heartbeat, type=positive_float, help="seconds between heartbeat events")
    parser.add_setting("--client-buffer", default=d.client_buffer, type=positive_int, help="frames a client may fall behind before it is dropped")
    parser.add_setting("--max-streams-per-user", default=d.max_streams_per_user, type=positive_int, help="open streams per user (429 beyond)")
    parser.add_setting("--recheck", default=d.recheck, type=positive_float, help="seconds between access re-checks of open streams")
    parser.add_switch("--reuse-port", help="SO_REUSEPORT, so several streamer processes share the port")
    parser.add_logging()
    return parser


def parse_config(argv: list[str] | None, environ: Mapping[str, str] | None = None) -> StreamerConfig:
    """Read flags and TRADESTREAM_* variables; bad values exit 2 with the reason."""
    parser = _parser(environ)
    args = parser.parse_args(argv)
    try:
        secret = args.secret or parser.environ.get(env_name("--secret")) or load_secret()
    except OSError as exc:
        parser.error(f"cannot read or create {SECRET_FILE}: {exc}")
    if not secret:
        parser.error(f"{SECRET_FILE} is empty: remove it or pass --secret")
    return StreamerConfig(
        secret=secret,
        database_url=args.database_url,
        ingress=args.ingress,
        publish=args.publish,
        replay=args.replay,
        host=args.host,
        port=args.port,
        heartbeat=args.heartbeat,
        client_buffer=args.client_buffer,
        max_streams_per_user=args.max_streams_per_user,
        recheck=args.recheck,
        reuse_port=args.reuse_port,
        log_level=args.log_level,
    )

