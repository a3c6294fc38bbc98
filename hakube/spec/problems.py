"""Problems found in a spec: what, where (field path and line), and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Problem:
    path: str  # field path, e.g. spec.hosts[1].address
    message: str  # what is wrong
    fix: str = ""  # how to fix it
    severity: Literal["error", "warning"] = "error"
    line: int | None = None  # 1-based line in the file, when known

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{self.severity}: {where}{self.path}: {self.message}{fix}"

    def as_dict(self) -> dict:
        return {
            "severity": self.severity,
            "path": self.path,
            "line": self.line,
            "message": self.message,
            "fix": self.fix,
        }


class SpecError(Exception):
    """Raised when a spec has at least one error; carries every problem found."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        errors = sum(p.severity == "error" for p in problems)
        super().__init__(f"{source}: {errors} error(s)")

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def format_path(loc: tuple) -> str:
    """('spec', 'hosts', 1, 'address') -> 'spec.hosts[1].address'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
