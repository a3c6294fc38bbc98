"""Fault actions that end a fault: what follows them is the rejoin (issue 16's second outage)."""

UNDO_ACTIONS = ("start", "heal", "resume")
