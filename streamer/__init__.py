"""The streamer: SSE fan-out of the bus to browsers, REST snapshots, login, admin API, stats.

sse.py frames, system events · resume.py Last-Event-ID → plan · catchup.py a resume's state core · client.py a socket
hub.py the Subscriber's sink: keys → channel.py → clients, disconnects (catchup_driver.py the replays) · fanout.py counted writes
admission.py / peers.py the per-user limit across streamers · revocations.py recent control messages · userstreams.py
auth.py / queries.py who is asking (sessions), database reads · handlers.py / snapshots.py / stream.py / admin_api.py / access.py HTTP (errors: web/)
heartbeat.py · stats.py / latency.py metrics
services.py / app.py / config.py / server.py wiring and main
"""
