"""Errors of the store package, raised by the admin actions.

    StoreError
     ├── NotFound        no user, account, strategy or link by that name or id
     ├── Conflict        a unique name is taken, or the link already exists
     └── InvalidInput    an empty name, a capital that is not a finite number > 0, ...
"""


class StoreError(Exception):
    """Base of every error raised by the store package; its text is fit for a user."""


class NotFound(StoreError):
    """The named or numbered row does not exist."""


class Conflict(StoreError):
    """The change would duplicate something that must be unique."""


class InvalidInput(StoreError):
    """A value is out of its allowed range or shape."""
