"""The wire: everything two tradestream processes need to agree on.

events.py   what travels (frozen dataclasses, validation, the kind registry)
codec.py    how it is encoded (msgpack, the only importer) · topics.py where it goes
broker.py   tradestream-broker: sequences per key, keeps history, answers replay
publisher.py / subscriber.py   the clients: PUSH in, SUB out with gap recovery
"""
