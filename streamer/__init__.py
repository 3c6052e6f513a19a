"""The streamer: SSE fan-out of the bus to browsers, REST snapshots, login, admin API, stats.

sse.py pure framing · resume.py Last-Event-ID → replay plan · client.py one detached socket, bounded
hub.py the Subscriber's sink: keys → channels → clients; format once, write many; resume; control
auth.py / queries.py who is asking (cookie, bearer) · database reads in an executor · stats.py counters, /metrics
handlers.py / stream.py / admin_api.py HTTP · services.py / app.py / config.py / server.py wiring and main
"""
