"""The processes that make events: webhook → orders (paper exchange) → positions.

signals.py   webhook payload validation (pure) · commands.py frames between producers
webhook.py   tradestream-webhook (Tornado) · intake.py its database side (strategy, Signal rows)
exchange.py  paper exchange (pure) · emission.py smart order events and batch summaries (pure)
orders.py    tradestream-orders · positions.py tradestream-positions · replay.py tradestream-replay
"""
