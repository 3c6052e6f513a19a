"""The whole schema: the metadata of every table, once each module that declares tables is imported.

Alembic's environment (autogenerate compares it with the database), init_db and the
schema tests read METADATA, so a process sees every table whatever it imported
before. A new module of tables is named here.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from store import handoff, models
from store.columns import Base

TABLE_MODULES = (models, handoff)
METADATA: MetaData = Base.metadata
