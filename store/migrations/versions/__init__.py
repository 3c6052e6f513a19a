"""One revision a file, r<NNNN>_<what>.py, oldest first: `python -m store.migrate revision -m WHAT` adds one."""
