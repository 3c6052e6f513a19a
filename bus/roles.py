"""What a CURVE client key may do on the bus: its roles, the sockets they open, the messages they send.

    role         may connect to (ZAP domain of the bound socket)        may send
    publisher    ingress PULL, ack_ingress ROUTER, wakeup PULLs          key events (k/<u>/<s>/), producer wake-ups
    subscriber   publish XPUB, replay ROUTER                             subscriptions, replay and stats requests
    control      ingress PULL                                            control messages (c/): disconnect, end_sessions, ...

A key holds one or more roles (a streamer's: subscriber and control). The
broker's ZAP handler admits a key on a socket when one of its roles may connect
there (bus/security.py); on the two ingresses it also checks each message's
topic against the sender's roles, so a subscriber cannot publish and a control
key cannot forge a user's event. Pure: no sockets, table-tested.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from bus.topics import CONTROL_TOPIC


class Role(StrEnum):
    """A client key's permission."""

    PUBLISHER = "publisher"
    SUBSCRIBER = "subscriber"
    CONTROL = "control"


class Domain(StrEnum):
    """The ZAP domain of a bound bus socket: which socket a peer is knocking at."""

    INGRESS = "ingress"
    ACK_INGRESS = "ack_ingress"
    PUBLISH = "publish"
    REPLAY = "replay"
    WAKEUP = "wakeup"


MAY_CONNECT: dict[Role, frozenset[Domain]] = {
    Role.PUBLISHER: frozenset({Domain.INGRESS, Domain.ACK_INGRESS, Domain.WAKEUP}),
    Role.SUBSCRIBER: frozenset({Domain.PUBLISH, Domain.REPLAY}),
    Role.CONTROL: frozenset({Domain.INGRESS}),
}


def parse_roles(text: str) -> frozenset[Role]:
    """`publisher,control` → the roles; ValueError names an unknown one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("no role given")
    roles = set()
    for name in names:
        try:
            roles.add(Role(name))
        except ValueError:
            raise ValueError(f"unknown role {name!r} (known: {', '.join(r.value for r in Role)})") from None
    return frozenset(roles)


def may_connect(roles: Iterable[Role], domain: str) -> bool:
    """Whether a key with `roles` may open a connection to a socket of `domain`."""
    return any(domain in MAY_CONNECT[role] for role in roles)


def may_send(roles: Iterable[Role], topic: bytes) -> bool:
    """Whether a key with `roles` may send a message on `topic` into an ingress."""
    wanted = Role.CONTROL if topic == CONTROL_TOPIC else Role.PUBLISHER
    return wanted in roles
