"""One path from a file to a `Cluster`: parse -> defaults -> validate.

Every problem is collected and reported at once, each with its field path, the line in
the file and a fix. Nothing here touches a host.

Example:
    >>> from hakube.spec import load
    >>> loaded = load("cluster.yaml")          # raises SpecError listing every problem
    >>> loaded.cluster.servers[0].name
    'server-1'
"""

from __future__ import annotations

import typing

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import HakubeError
from .model import API_VERSION, KIND, Cluster
from .parse import parse, read
from .problems import Problem, SpecError, format_path
from .validate import validate


@dataclass(frozen=True)
class Loaded:
    """A valid cluster, where it came from, and the warnings it carries."""

    cluster: Cluster
    source: Path
    warnings: list[Problem] = field(default_factory=list)

    def only(self, keep) -> "Loaded":
        """The same spec with only the hosts `keep(host)` is true of (a cluster.yaml once
        hosts leave it: `hakube remove`; the hosts a day-2 operation starts from: the probes)."""
        spec = self.cluster.spec
        cluster = self.cluster.model_copy(update={"spec": spec.model_copy(
            update={"hosts": [h for h in spec.hosts if keep(h)]})})
        return Loaded(cluster, self.source, self.warnings)

    def named(self, hosts: list[str] | None, fix: str) -> list[str]:
        """`hosts` (None: every host) in the spec's order, each once; a HakubeError naming
        the ones the spec does not have, the hosts it does, and `fix`."""
        names = [h.name for h in self.cluster.spec.hosts]
        unknown = [h for h in hosts or () if h not in names]
        if unknown:
            raise HakubeError(f"{', '.join(unknown)}: not in {self.source.name} (hosts there: {', '.join(names)}); "
                              + fix)
        return [h for h in names if hosts is None or h in hosts]

    def resolve(self, p: Path | None) -> Path | None:
        """A path from the spec, with ~ expanded, relative to the spec file's folder."""
        if p is None:
            return None
        p = p.expanduser()
        return p if p.is_absolute() else (self.source.parent / p).resolve()


def load(path: str | Path) -> Loaded:
    path = Path(path)
    return loads(read(path), source=path)


def loads(text: str, source: str | Path = "cluster.yaml") -> Loaded:
    source = Path(source)
    data, lines, problems = parse(text, str(source))
    try:
        cluster = _build(data, lines, str(source))
    except SpecError as e:
        raise SpecError(str(source), problems + e.problems) from None
    problems += [
        Problem(p.path, p.message, p.fix, p.severity, p.line or _line_for(lines, p.path))
        for p in validate(cluster, base=source.parent)
    ]
    if any(p.severity == "error" for p in problems):
        raise SpecError(str(source), problems)
    return Loaded(cluster=cluster, source=source.absolute(), warnings=problems)


def _line_for(lines: dict[str, int], path: str) -> int | None:
    """The line of `path`, or of its nearest parent that has one."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


# ---- defaults and structure --------------------------------------------------------------


def _build(data: dict, lines: dict[str, int], source: str) -> Cluster:
    try:
        return Cluster.model_validate(data)
    except ValidationError as e:
        problems = [_problem(err, lines) for err in e.errors()]
        raise SpecError(source, _dedupe(_fold_typos(problems))) from None


def _problem(err: dict, lines: dict[str, int]) -> Problem:
    loc = tuple(err["loc"])
    if loc and loc[-1] == "[key]":  # a mapping's key is wrong: point at the key itself
        loc = loc[:-1]
    path = format_path(loc)
    kind = err["type"]
    line = _line_for(lines, path)
    if kind == "spec_value":  # hakube's own checks (model.bad): message and fix
        ctx = err.get("ctx") or {}
        msg = ctx.get("message", err["msg"])
        if str(err.get("input")) not in msg:
            msg += _got(err.get("input"))
        return Problem(path, msg, ctx.get("fix", ""), line=line)
    if kind == "extra_forbidden":
        parent_model = _model_at(loc[:-1])
        known = sorted(f.alias or n for n, f in parent_model.model_fields.items()) if parent_model else []
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
        fix = f"did you mean '{guess[0]}'?" if guess else f"known keys here: {', '.join(known)}"
        return Problem(path, "unknown key", fix, line=line)
    if kind == "missing":
        return Problem(path, "required field is missing", "add it (see `hakube init`)", line=line)
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        if path == "apiVersion":
            expected = f"'{API_VERSION}'"
        if path == "kind":
            expected = f"'{KIND}'"
        return Problem(path, f"got {_show(err['input'])}", f"use one of {expected}", line=line)
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return Problem(path, f"{msg}{_got(err.get('input'))}", _fix_for(kind), line=line)


def _show(value: Any) -> str:
    """A value as the user wrote it, cut short: a problem stays one readable line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _got(value: Any) -> str:
    return "" if isinstance(value, (dict, list)) else f" (got {_show(value)})"


def _fix_for(kind: str) -> str:
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return "give a value of the type this field expects"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "use a value within the allowed range"
    if kind.startswith("ip_v4"):
        return "give an IPv4 address (or network in CIDR form)"
    return ""


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class at a location, walking Cluster's fields by alias or name."""
    model: Any = Cluster
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        fields.update(model.model_fields)
        f = fields.get(part)
        if f is None:
            return None
        model = _inner_model(f.annotation)
        if model is None:
            return None
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        m = _inner_model(arg)
        if m is not None:
            return m
    return None


def _fold_typos(problems: list[Problem]) -> list[Problem]:
    """Drop "missing X" when a sibling unknown key is a typo of X: one mistake, one problem."""
    meant = {p.path.rsplit(".", 1)[0] + "." + p.fix.split("'")[1]
             for p in problems if p.message == "unknown key" and p.fix.startswith("did you mean")}
    return [p for p in problems if not (p.message == "required field is missing" and p.path in meant)]


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            out.append(p)
    return out
