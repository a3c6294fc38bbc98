"""Errors a user can act on. The CLI prints them as one clear message, never a traceback."""


class HakubeError(Exception):
    """Something went wrong that the user can fix: the message says what, where and how."""
