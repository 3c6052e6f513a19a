"""The default endpoints of CONTRACT section 1, in one place.

Every process that binds or connects one of these takes its default from here;
each is overridable by its flag and its TRADESTREAM_* variable.
"""

ACK_INGRESS = "tcp://127.0.0.1:5556"  # broker ROUTER; producers' outbox relays DEALER (ACK-PROTOCOL.md)
INGRESS = "tcp://127.0.0.1:5557"  # broker PULL; streamer, admin and replay --raw PUSH
PUBLISH = "tcp://127.0.0.1:5558"  # broker XPUB; streamers SUB
REPLAY = "tcp://127.0.0.1:5559"  # broker ROUTER; streamers DEALER
ORDERS = "tcp://127.0.0.1:5560"  # order handler PULL; webhook and replay PUSH
FILLS = "tcp://127.0.0.1:5561"  # position handler PULL; order handler PUSH
