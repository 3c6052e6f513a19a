"""HTTP plumbing shared by the two Tornado apps (the streamer and the webhook); knows no business rule.

errors.py   the one JSON error type and writer: `{"error": code, "message": text}` with its status
replies.py  JSON answers, by orjson (the one JSON library; stdlib json only to read bodies strictly, jsonbody.py)
server.py   an HTTPServer that survives hostile clients: header/body timeouts, accept back-off on EMFILE
front.py    a few (method, path) served in front of an Application's routing (the stream), the rest by it
backoff.py  the pure state behind it: when accepting pauses, one log line per interval with a count
ratelimit.py token buckets per key, bounded in memory (webhook tokens; login addresses and usernames)
jsonbody.py the strict JSON reading of request bodies: no duplicate key, bounded depth and numbers, storable strings
health.py   /livez and readiness /healthz, a dependency's Probe · proxy.py a trusted proxy's X-Forwarded-* headers
"""
