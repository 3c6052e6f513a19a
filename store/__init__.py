"""The database: what exists, who may see it, and how it is administered.

models.py   the domain's tables (SQLAlchemy 2.0) · handoff.py the hand-off tables · columns.py their column types
schema.py   the metadata of every table · db.py engines, sessions, init_db · errors.py · health.py is it there
migrate.py  schema migrations (Alembic; revisions in migrations/versions/): status, upgrade, new revisions
auth.py     password and token hashing, login and API-token lookups · sessions.py login sessions
access.py   THE access rule: may user U stream strategy S (owner or linked account)
rows.py     rows → bus events, snapshot rows and the admin JSON shapes
actions.py  admin actions (commit, then publish control messages) · demo.py the demo world
admin.py    tradestream-admin (settings, run, main) · subcommands.py its subcommands and their output
"""
