"""HTTP plumbing shared by the two Tornado apps (the streamer and the webhook); knows no business rule.

errors.py   the one JSON error type and writer: `{"error": code, "message": text}` with its status
replies.py  JSON answers, by orjson (the one JSON library for answers; bodies are read by msgspec, jsonbody.py)
server.py   an HTTPServer that survives hostile clients: header/body timeouts, accept back-off on EMFILE
front.py    a few (method, path) served in front of an Application's routing (the stream), the rest by it
backoff.py  the pure state behind it: when accepting pauses, one log line per interval with a count
ratelimit.py token buckets per key, bounded in memory (webhook tokens; login addresses and usernames)
jsonbody.py the strict JSON reading of request bodies: no duplicate key, bounded depth and numbers, storable strings
bodies.py   request bodies read as they arrive, at most 64 KiB: past it a JSON 413 body_too_large (webhook, login, admin)
health.py   /livez and readiness /healthz, a dependency's Probe · proxy.py a trusted proxy's X-Forwarded-* headers
"""
