"""Errors of the store package, raised by the admin actions and by opening the database.

    StoreError
     ├── NotFound        no user, account, strategy or link by that name or id
     ├── Conflict        a unique name is taken, or the link already exists
     ├── InvalidInput    an empty name, a capital that is not a finite number > 0, ...
     ├── DatabaseUnavailable  the database cannot be reached or opened (raised at start)
     └── SchemaError     the schema cannot be migrated as asked (store/migrate.py)
"""


class StoreError(Exception):
    """Base of every error raised by the store package; its text is fit for a user."""


class NotFound(StoreError):
    """The named or numbered row does not exist."""


class Conflict(StoreError):
    """The change would duplicate something that must be unique."""


class InvalidInput(StoreError):
    """A value is out of its allowed range or shape."""


class DatabaseUnavailable(StoreError):
    """The database cannot be reached, opened or set up; the text is one line naming it."""


class SchemaError(StoreError):
    """The database's schema cannot be migrated as asked (an unknown revision, tables of no known release)."""
