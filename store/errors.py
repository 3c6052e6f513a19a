"""Errors of the store package, raised by the admin actions and by opening the database.

    StoreError
     ├── NotFound        no user, account, strategy or link by that name or id
     ├── Conflict        a unique name is taken, or the link already exists
     ├── InvalidInput    an empty name, a capital that is not a finite number > 0, ...
     ├── DatabaseUnavailable  the database cannot be reached or opened (raised at start; .not_there_yet: worth waiting)
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
    """The database cannot be reached, opened or set up; the text is one line naming it.

    `not_there_yet`: the server is not there yet (refused, starting up: store/reachability.py), so a
    process starting may wait for it (store/wait.py); False for what waiting cannot mend.
    """

    def __init__(self, message: str, *, not_there_yet: bool = False) -> None:
        super().__init__(message)
        self.not_there_yet = not_there_yet


class SchemaError(StoreError):
    """The database's schema cannot be migrated as asked (an unknown revision, tables of no known release)."""
