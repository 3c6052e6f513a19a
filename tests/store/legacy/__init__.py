"""The models of older releases, as their `init-db` (create_all, no alembic_version) made the schema.

release_0001.py is store/models.py before the hand-off tables (commit 1f8705c^),
release_0002.py before user_sessions and users.is_active (c89f042^); each is the
schema its revision in store/migrations/versions/ stands for. Frozen copies: never edit.
"""
