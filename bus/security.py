"""Bus sockets that refuse strangers: ipc:// folder checks, and CURVE when keys are configured.

    main: security.start(config.bus_keys, binds=..., connects=...)   once; one line and exit 1 on a problem
    socket code: security.bind(sock, endpoint, Domain.X)  instead of sock.bind(endpoint)
                 security.connect(sock, endpoint)        instead of sock.connect(endpoint)
                 security.receiver(sock, topic_at)       on an ingress: drops what the sender's roles may not send

Without keys, bind/connect only check ipc:// folders (bus/ipcdir.py). With
`--bus-keys DIR` (bus/curvekeys.py) every socket a process makes from its
contexts is CURVE-encrypted: a bound socket is a CURVE server with the
folder's server key and its ZAP domain, a connected one a client with the
folder's client key. libzmq does the cryptography; the ZAP handler is pyzmq's
ThreadAuthenticator with a callback that admits a key on a socket only when one
of its roles opens that domain (bus/roles.py). Refusals are counted (the
broker's `stats` answer carries them) and logged at most once per
REFUSAL_LOG_S: a peer without CURVE or with another server key is seen by a
socket monitor, an unknown key or a wrong role by the callback.

The keys follow the zmq context (a zmq.asyncio context shadowing the same
libzmq context shares them), so a test can run a keyed broker next to keyless
rogue peers in one process.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import zmq
import zmq.asyncio
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from bus import ipcdir
from bus.curvekeys import BusKeys, BusKeysError
from bus.frames import recv_frames
from bus.process import setting
from bus.quiet_log import QuietLog
from bus.roles import Domain, may_connect, may_send

log = logging.getLogger(__name__)

REFUSAL_LOG_S = 10.0
_WATCHED = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
_MISMATCH = zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
Receive = Callable[[zmq.Socket[Any]], "list[bytes] | None"]


def bus_keys_setting() -> str:
    """The `--bus-keys` setting of every process on the bus (declared here once)."""
    return setting(
        "", help="folder of this host's CURVE keys (tradestream-admin bus-keys); empty: no CURVE, for ipc:// or a trusted network"
    )


@dataclass(slots=True)
class AuthStats:
    """Refused peers and messages (part of the broker's `stats` answer)."""

    auth_refused_no_key: int = 0  # a peer without CURVE, seen as such (ZMTP mechanism mismatch)
    auth_refused_handshake: int = 0  # any other failed handshake: another server key, a keyless peer libzmq saw as garbage
    auth_refused_unknown_key: int = 0  # a client key nobody authorized
    auth_refused_role: int = 0  # a known key at a socket its roles do not open
    auth_refused_messages: int = 0  # a message its sender's roles may not send (a subscriber publishing...)


class _Refusals:
    """Counts refusals and logs them, one line per REFUSAL_LOG_S with how many were not logged; thread-safe."""

    def __init__(self) -> None:
        self.stats = AuthStats()
        self._lock = threading.Lock()
        self._log = QuietLog(log, logging.WARNING, REFUSAL_LOG_S)

    def refuse(self, counter: str, what: str) -> None:
        with self._lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
            self._log("bus peer refused: %s", what)


class _Admission:
    """The ZAP callback: a key is admitted on a domain when one of its roles opens it."""

    def __init__(self, keys: BusKeys, refusals: _Refusals) -> None:
        self.keys, self.refusals = keys, refusals

    def callback(self, domain: str, key: bytes) -> bool:
        peer = self.keys.authorized.get(key)
        if peer is None:
            self.refusals.refuse("auth_refused_unknown_key", f"unknown key {key[:8].decode()}... at {domain}")
            return False
        if not may_connect(peer.roles, domain):
            roles = ",".join(sorted(role.value for role in peer.roles))
            self.refusals.refuse("auth_refused_role", f"key {peer.name} ({roles}) may not connect to {domain}")
            return False
        return True


class _Monitors(threading.Thread):
    """Reads the monitors of the server sockets: handshakes that failed before ZAP had a say."""

    def __init__(self, refusals: _Refusals) -> None:
        super().__init__(name="bus-monitors", daemon=True)
        self.refusals = refusals
        self._lock = threading.Lock()
        self._pending: list[zmq.Socket[Any]] = []
        self._stop = threading.Event()

    def watch(self, monitor: zmq.Socket[Any]) -> None:
        with self._lock:  # handed to this thread, never used again by the caller
            self._pending.append(monitor)

    def run(self) -> None:
        poller, sockets = zmq.Poller(), []
        while not self._stop.is_set():
            with self._lock:
                for monitor in self._pending:
                    poller.register(monitor, zmq.POLLIN)
                    sockets.append(monitor)
                self._pending.clear()
            for monitor, _ in poller.poll(100):
                self._read(monitor)
        for monitor in sockets + self._pending:
            monitor.close(linger=0)

    def _read(self, monitor: zmq.Socket[Any]) -> None:
        try:
            event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
        except zmq.Again:
            return
        where = event["endpoint"].decode(errors="replace")
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and event["value"] == _MISMATCH:
            self.refusals.refuse("auth_refused_no_key", f"a peer without CURVE at {where}")
        elif event["event"] in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
            self.refusals.refuse("auth_refused_handshake", f"a failed CURVE handshake at {where} (no key, or another server's: error {event['value']:#x})")

    def stop(self) -> None:
        self._stop.set()
        if self.is_alive():
            self.join()


class Security:
    """The keys of one zmq context and, once it binds, its ZAP handler and monitors."""

    def __init__(self, context: zmq.Context[Any], keys: BusKeys) -> None:
        self.context, self.keys = context, keys
        self.refusals = _Refusals()
        self._authenticator: ThreadAuthenticator | None = None
        self._monitors: _Monitors | None = None

    def serve(self, sock: zmq.Socket[Any], domain: Domain) -> None:
        """Make `sock` a CURVE server of `domain`, the ZAP handler running before it binds."""
        if self.keys.server_secret is None:
            raise BusKeysError(f"{self.keys.folder}: no server.key_secret, and this process binds a bus socket")
        if self._authenticator is None:
            self._authenticator = ThreadAuthenticator(self.context, log=logging.getLogger("zmq.auth"))
            self._authenticator.start()
            self._monitors = _Monitors(self.refusals)
            self._monitors.start()
        self._authenticator.configure_curve_callback(domain.value, _Admission(self.keys, self.refusals))
        sock.curve_secretkey = self.keys.server_secret
        sock.curve_publickey = self.keys.server_public
        sock.curve_server = True
        sock.zap_domain = domain.value.encode()
        assert self._monitors is not None
        self._monitors.watch(sock.get_monitor_socket(_WATCHED))

    def join(self, sock: zmq.Socket[Any]) -> None:
        """Make `sock` a CURVE client of the bus's servers."""
        if self.keys.client_secret is None or self.keys.client_public is None:
            raise BusKeysError(f"{self.keys.folder}: no client.key_secret, and this process connects to the bus")
        sock.curve_secretkey = self.keys.client_secret
        sock.curve_publickey = self.keys.client_public
        sock.curve_serverkey = self.keys.server_public

    def receiver(self, topic_at: int) -> Receive:
        """Receive one message, or None (counted, logged) when its sender's roles may not send its topic."""
        authorized, refusals = self.keys.authorized, self.refusals

        def receive(sock: zmq.Socket[Any]) -> list[bytes] | None:
            first = frame = sock.recv(zmq.NOBLOCK, copy=False)
            frames = [first.bytes]
            while frame.more:  # cheaper than getsockopt(RCVMORE) (bus/frames.py)
                frame = sock.recv(copy=False)
                frames.append(frame.bytes)
            if len(frames) <= topic_at:
                return frames  # malformed: the broker's own checks drop and count it
            peer = authorized.get(str(first.get("User-Id")).encode())
            if peer is None or not may_send(peer.roles, frames[topic_at]):
                name = peer.name if peer else "?"
                refusals.refuse("auth_refused_messages", f"key {name} may not send on topic {frames[topic_at][:40]!r}")
                return None
            return frames

        return receive

    def close(self) -> None:
        """Stop the ZAP handler and the monitors (before the context is terminated)."""
        if self._monitors is not None:
            self._monitors.stop()
            self._monitors = None
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None


_installed: dict[int, Security] = {}


def install(context: zmq.Context[Any], keys: BusKeys) -> Security:
    """Secure every socket made from `context` from now on with `keys`."""
    security = Security(context, keys)
    _installed[context.underlying] = security
    return security


def uninstall(context: zmq.Context[Any]) -> None:
    """Forget `context`'s keys, stopping its ZAP handler."""
    security = _installed.pop(context.underlying, None)
    if security is not None:
        security.close()


def of(sock: zmq.Socket[Any]) -> Security | None:
    """The security of the socket's context; None without keys."""
    return _installed.get(sock.context.underlying)


def start(folder: str, *, binds: Iterable[str] = (), connects: Iterable[str] = ()) -> bool:
    """At a process's start: check its ipc:// folders and install its keys; False after one error line.

    Keys go on the process's two default contexts (zmq's and zmq.asyncio's).
    """
    binds, connects = list(binds), list(connects)
    try:
        for endpoint in binds:
            ipcdir.prepare(endpoint, bind=True)
        for endpoint in connects:
            ipcdir.prepare(endpoint, bind=False)
        if folder:
            keys = BusKeys.load(folder, server=bool(binds), client=bool(connects))
            contexts: tuple[zmq.Context[Any], ...] = (zmq.Context.instance(), zmq.asyncio.Context.instance())
            for context in contexts:
                if context.underlying not in _installed:
                    atexit.register(uninstall, context)
                install(context, keys)
    except (BusKeysError, ipcdir.BusFolderError) as exc:
        log.error("cannot start: %s%s", "bus keys: " if isinstance(exc, BusKeysError) else "", exc)
        return False
    return True


def bind(sock: zmq.Socket[Any], endpoint: str, domain: Domain) -> None:
    """`sock.bind(endpoint)`, its ipc:// folder checked and, with keys, as a CURVE server of `domain`."""
    ipcdir.prepare(endpoint, bind=True)
    security = of(sock)
    if security is not None:
        security.serve(sock, domain)
    sock.bind(endpoint)


def connect(sock: zmq.Socket[Any], endpoint: str) -> None:
    """`sock.connect(endpoint)`, its ipc:// folder checked and, with keys, as a CURVE client."""
    ipcdir.prepare(endpoint, bind=False)
    security = of(sock)
    if security is not None:
        security.join(sock)
    sock.connect(endpoint)


def receiver(sock: zmq.Socket[Any], topic_at: int) -> Receive:
    """How to receive from an ingress: with keys, dropping messages the sender's roles may not send."""
    security = of(sock)
    return recv_frames if security is None else security.receiver(topic_at)


def stats(sock: zmq.Socket[Any]) -> dict[str, int]:
    """The refusal counters of the socket's context (zeros without keys)."""
    security = of(sock)
    return asdict(security.refusals.stats if security is not None else AuthStats())
