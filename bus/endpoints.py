"""The default endpoints of CONTRACT section 1, in one place.

Every process that binds or connects one of these takes its default from here;
each is overridable by its flag and its TRADESTREAM_* variable. On one host the
bus is unix sockets in `var/bus/` (relative to the working directory, created
0700 by whoever binds: bus/ipcdir.py), so no other local account can reach it.
Across hosts give every process `tcp://` endpoints and CURVE keys (`--bus-keys`,
bus/security.py; docs/operations.md).
"""

BUS_FOLDER = "var/bus"
ACK_INGRESS = f"ipc://{BUS_FOLDER}/ack-ingress"  # broker ROUTER; producers' outbox relays DEALER (CONTRACT section 2)
INGRESS = f"ipc://{BUS_FOLDER}/ingress"  # broker PULL; streamer, admin and replay --raw PUSH
PUBLISH = f"ipc://{BUS_FOLDER}/publish"  # broker XPUB; streamers SUB
REPLAY = f"ipc://{BUS_FOLDER}/replay"  # broker ROUTER; streamers DEALER
ORDERS = f"ipc://{BUS_FOLDER}/orders"  # order handler PULL; webhook and replay PUSH
FILLS = f"ipc://{BUS_FOLDER}/fills"  # position handler PULL; order handler PUSH
