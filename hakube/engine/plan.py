"""Plans: the actions a step decided on, each with its one sentence, and the one runner.

A step reads facts and returns actions; it never branches on dry run. `execute` applies
them in order and reports each, or, on a dry run, reports what would be done and applies
nothing. Each action has ONE sentence, in the imperative ("restart etcd (etcd.conf.yml
changed)"); the runner turns it into "would restart etcd ..." on a dry run and "restarted
etcd ..." once done, so what a dry run shows is what the run then does (the lab test
compares the two: tests/lab/test_up.py).

Example:
    >>> a = Action("server-1", "write /etc/etcd/etcd.conf.yml: new")
    >>> a.said(dry_run=True), a.said(dry_run=False)
    ('would write /etc/etcd/etcd.conf.yml: new', 'wrote /etc/etcd/etcd.conf.yml: new')
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

_PAST = {"write": "wrote", "set": "set", "stop": "stopped", "bootstrap": "bootstrapped",
         "rejoin": "rejoined", "join": "joined", "load": "loaded", "apply": "applied", "swap": "swapped"}
_ING = {"bootstrap": "bootstrapping", "stop": "stopping", "set": "setting", "swap": "swapping"}


def past(verb: str) -> str:
    """write -> wrote, restart -> restarted, enable -> enabled."""
    if verb in _PAST:
        return _PAST[verb]
    return verb + ("d" if verb.endswith("e") else "ed")


def progressive(verb: str) -> str:
    """join -> joining, rejoin -> rejoining, bootstrap -> bootstrapping."""
    if verb in _ING:
        return _ING[verb]
    return (verb[:-1] if verb.endswith("e") else verb) + "ing"


def _conjugate(sentence: str, form: Callable[[str], str]) -> str:
    head, sep, rest = sentence.partition(" ")
    word = head.rstrip(":,;")
    return form(word) + head[len(word):] + sep + rest


@dataclass(frozen=True)
class Action:
    """One change to one host (or "local"): what it is, and how to do it."""

    host: str
    sentence: str                                   # imperative: "install haproxy keepalived"
    run: Callable[[], Awaitable[None]] | None = None  # None: nothing to run (already done by the plan)
    detail: str = ""                                # shown under it on a dry run: a file's diff
    # long operations are announced before they run ("joining the etcd cluster ...") and
    # not after, so a person watching knows what the wait is for
    announce: bool = False
    path: str = ""                                  # the file it writes, if it writes one

    def said(self, dry_run: bool) -> str:
        if dry_run:
            return f"would {self.sentence}"
        return _conjugate(self.sentence, progressive if self.announce else past)


async def execute(d, report, actions: list[Action]) -> None:
    """Apply `actions` in order (a dry run applies none), reporting each one."""
    for a in actions:
        report.planned.append(f"{a.host}: {a.sentence}")
        if d.log is not None:  # the run log has the plan beside the commands that carried it out
            d.log.write(a.host, f"{'plan' if d.dry_run else 'action'}: {a.sentence}")
        if d.dry_run:
            d.ui.change(report, a.host, a.said(True))
            if a.detail:
                d.ui.detail(a.detail)
            continue
        if a.announce:
            d.ui.change(report, a.host, a.said(False))
        if a.run is not None:
            await a.run()
        if not a.announce:
            d.ui.change(report, a.host, a.said(False))
