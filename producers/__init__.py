"""The processes that make events: webhook → orders (paper exchange) → positions, and replay.

webhook.py    tradestream-webhook · signals.py validation (pure) · intake.py its database side
orders.py     tradestream-orders · exchange.py paper exchange, emission.py smart events (pure) · prices.py
positions.py  tradestream-positions · pull_loop.py their PULL loop · commands.py frames between processes
replay.py     tradestream-replay · tradelog.py the log format · samples/ a sample log · errors.py
"""
