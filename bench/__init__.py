"""tradestream-bench: the fan-out latency benchmark harness.

    harness (main, orchestration, --find-max, --broker-only) ─▶ stack (broker + streamer subprocesses, temp DB, tokens)
    publish (rate-paced PUSH process, publish time in order_id) ─▶ broker ─▶ streamer ─▶ loadgen (one epoll loop of raw-socket SSE clients; ssestream parses, kerneltime gives each read's arrival)
    report (seq accounting, percentiles, table, JSON, plot) ◀─ procstat (CPU and RSS of a pid from /proc)
"""
