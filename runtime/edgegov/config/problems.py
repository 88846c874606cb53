"""The config error vocabulary: one located problem per line, all reported at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an envelope file, at a dotted location (and a line if known)."""

    file: str
    loc: tuple
    message: str
    line: int | None = None

    @property
    def where(self) -> str:
        return ".".join(str(p) for p in self.loc) or "(top)"

    def __str__(self) -> str:
        at = f"{self.file}:{self.line}" if self.line else self.file
        return f"{at}: {self.where}: {self.message}"


class EnvelopeConfigError(Exception):
    """An envelope file that cannot be admitted; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
