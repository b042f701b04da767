"""The exceptions every layer shares."""


class Cancelled(Exception):
    """Raised inside long work (scoring, a run) when the caller's cancel event is set."""
