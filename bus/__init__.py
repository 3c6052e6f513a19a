"""The wire: everything two tradestream processes need to agree on.

events.py (schema; exact_decode.py the broker's strict fast path) · codec.py (msgpack) · protocol.py (broker frames) · topics.py · endpoints.py   what, how, where
reasons.py   why a stream is ended (force_disconnect reasons) and their texts, for store, streamer and page
broker.py (+ broker_config.py its settings) = ingest.py (check, sequence, journal, publish) + sequencer.py + journal.py + ack_ingress.py (+ producer_streams.py)
            + broker_requests.py (replay and stats answers)
publisher.py (PUSH in) · subscriber.py (SUB out) = subscriptions.py (keys, readers) + keysync.py (per-key state) + subreader.py + recovery.py + watchdog.py (+ liveness.py)
replay.py (history client) · frames.py (cheap multipart I/O) · process.py (settings, logging, signals) · kinds.py (setting values) · errors.py
quiet_log.py   a line per interval, with its count, for what repeats (every process's)
security.py (bind/connect hooks: ipc folders, CURVE, ZAP) = roles.py (who may do what) + curvekeys.py (key folders) + ipcdir.py (the 0700 rule)
"""
