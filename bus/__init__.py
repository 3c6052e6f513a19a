"""The wire: everything two tradestream processes need to agree on.

events.py (msgspec schema) · codec.py (msgpack via msgspec) · protocol.py · topics.py · endpoints.py
broker.py + sequencer.py   tradestream-broker: seq per key, history, replay, head markers
publisher.py (PUSH in) · subscriber.py (SUB out, gaps, watchdog) · replay.py (history client)
frames.py (cheap multipart I/O) · process.py (settings, logging, signals of every main) · kinds.py (setting values) · errors.py
"""
