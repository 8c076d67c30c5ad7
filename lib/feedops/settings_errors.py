"""What is wrong with a configuration: :class:`Problem` (variable, what, fix, where from), :class:`ConfigError`
(every problem at once), and :func:`explain`, which words a pydantic validation error as a problem's
message and fix without ever showing a secret value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .addresses import SINK_FORMS


@dataclass
class Problem:
    """One thing wrong with the configuration."""

    setting: str  # the variable (or option) at fault, e.g. FEEDOPS_SUBSCRIBE_BATCH_SIZE
    message: str  # what is wrong, never containing a secret value
    fix: str  # what to do about it
    source: str | None = None  # where the value came from (env file line, secret file, environment)

    def __str__(self) -> str:
        where = f" (from {self.source})" if self.source else ""
        return f"{self.setting}{where}: {self.message}; fix: {self.fix}"


class ConfigError(Exception):
    """The configuration cannot be loaded; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def explain(error: dict[str, Any], var: str, secret: bool) -> tuple[str, str]:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    shown = "" if secret else f" (got {error.get('input')!r})"
    if kind in ("int_parsing", "int_from_float"):
        return f"must be a whole number{shown}", f"set {var} to an integer"
    if kind == "float_parsing":
        return f"must be a number{shown}", f"set {var} to a number such as 1.5"
    if kind == "bool_parsing":
        return f"must be true or false{shown}", f"set {var} to true or false"
    if kind in ("less_than_equal", "less_than"):
        limit = ctx.get("le", ctx.get("lt"))
        hint = " (CTP's limit)" if var.endswith("SUBSCRIBE_BATCH_SIZE") else ""
        return f"must be at most {limit}{hint}{shown}", f"set {var} to {limit} or less"
    if kind in ("greater_than_equal", "greater_than"):
        limit = ctx.get("ge", ctx.get("gt"))
        word = "at least" if "ge" in ctx else "greater than"
        return f"must be {word} {limit}{shown}", f"set {var} to a larger value"
    if kind in ("string_too_long", "too_long"):
        limit = ctx.get("max_length")
        actual = "" if secret else f" (got {len(str(error.get('input', '')))})"
        return f"must be at most {limit} characters, CTP's field size{actual}", f"shorten {var} to {limit} characters or fewer"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}{shown}", f"set {var} to one of {ctx.get('expected')}"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    for suffix, fix in VALUE_FIXES.items():
        if var.endswith(suffix):
            return message, fix.format(var=var)
    return message, f"correct {var} (see .env.example)"


#: The fix for a value a validator rejected, by variable-name suffix.
VALUE_FIXES = {
    "_FRONTS": "write {var} as tcp://host:port entries (host a hostname or an IP address, port 1-65535), comma-separated",
    "_WORKER_LISTEN": "set {var} to host:port, e.g. 127.0.0.1:9108",
    "_SHARD": "set {var} to i/N with 0 <= i < N, e.g. 0/1",
    "_SINK_URL": "set {var} to " + SINK_FORMS,
}
