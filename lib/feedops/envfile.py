"""A strict parser for ``envs/<env>.env`` files.

The format is the common subset of docker compose ``env_file``, systemd
``EnvironmentFile`` and python-dotenv, so one file serves every runtime:

* blank lines and lines starting with ``#`` are ignored;
* every other line is ``NAME=value`` with NAME matching ``[A-Z_][A-Z0-9_]*``;
* a value may be wrapped in single or double quotes (no escapes, no interpolation);
* an unquoted value ends at `` #`` (an inline comment) and is stripped.

Anything else is a syntax error that names the file, the line and the fix, instead
of python-dotenv's silent skip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


@dataclass
class EnvFileError(Exception):
    path: str
    line_no: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line_no}: {self.reason}"


def parse_env_text(text: str, path: str = "<string>") -> dict[str, str]:
    values: dict[str, str] = {}
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        if "=" not in line:
            raise EnvFileError(path, line_no, "expected NAME=value (no '=' found); fix the line or comment it out with '#'")
        name, value = line.split("=", 1)
        name = name.strip()
        if not _NAME.match(name):
            raise EnvFileError(path, line_no, f"invalid variable name {name!r}; names are upper case letters, digits and '_'")
        if name != line.split("=", 1)[0]:
            raise EnvFileError(path, line_no, f"space before '=' in {name!r}; write NAME=value without spaces")
        value = value.strip()
        if value[:1] in ("'", '"'):
            quote = value[0]
            end = value.find(quote, 1)
            if end == -1:
                raise EnvFileError(path, line_no, f"unterminated {quote} quote in the value of {name}; close the quote")
            rest = value[end + 1:].strip()
            if rest and not rest.startswith("#"):
                raise EnvFileError(path, line_no, f"unexpected text after the quoted value of {name}; remove it")
            value = value[1:end]
        else:
            if " #" in value:
                value = value.split(" #", 1)[0].rstrip()
            if any(ch in value for ch in "\"'`$"):
                raise EnvFileError(path, line_no, f"the value of {name} contains a quote or '$'; wrap the whole value in single quotes")
        if name in values:
            raise EnvFileError(path, line_no, f"{name} is set twice in this file; keep one line")
        values[name] = value
    return values


def parse_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EnvFileError(str(path), 0, "not UTF-8 text; re-save the file as UTF-8") from None
    except OSError as exc:
        raise EnvFileError(str(path), 0, f"cannot read the file ({exc.strerror}); check the path and permissions") from None
    return parse_env_text(text, str(path))
