"""The processes that make events: webhook → orders (paper exchange) → positions, and replay.

webhook.py    tradestream-webhook (HTTP) · webhook_service.py its work · signals.py validation (pure) · intake.py storing
orders.py     tradestream-orders · trading.py a command's rows · exchange.py, emission.py (pure) · prices.py
positions.py  tradestream-positions · pull_loop.py their loop · inbox.py, fills.py the rows they take in
outbox.py     the events they write · relay.py sends them to the broker, relay_window.py its state (pure)
replay.py     tradestream-replay (replay_sinks.py where records go) · tradelog.py the log format · replay_runs.py its progress, replay_progress.py
              where a run starts (pure) · samples/ a sample log · commands.py · errors.py
"""
