"""The schema's history as Alembic revisions (env.py, versions/), run by store/migrate.py; no alembic.ini."""
