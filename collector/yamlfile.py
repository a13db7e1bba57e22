"""Where in a YAML file a problem is: `Problem` (path, message, line, column, file), the
error that carries them, and the helpers that find a line for a path, spot keys written twice
and put PyYAML's errors in plain words. Shared by the config (`collector.config`) and the
device profiles it merges (`collector.profiles`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    line: int | None = None
    column: int | None = None
    file: str | None = None  # another file than the config (a device profile)

    def __str__(self) -> str:
        where = f" (line {self.line}{f', column {self.column}' if self.column else ''})" \
            if self.line else ""
        text = f"{self.path}: {self.message}{where}" if self.path else f"{self.message}{where}"
        return f"{self.file}: {text}" if self.file else text


class ConfigError(Exception):
    """The config file is unusable; `problems` holds one entry per thing to fix."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def format_path(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def duplicate_keys(node: Any, loc: tuple[Any, ...] = ()) -> Iterator[Problem]:
    """A key written twice in one mapping: YAML keeps the last silently, so say so."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = getattr(key, "value", None)
            line = key.start_mark.line + 1
            if isinstance(name, str) and name != "<<":
                if name in seen:
                    yield Problem(format_path((*loc, name)),
                                  f"{name!r} is written twice in the same place, on lines "
                                  f"{seen[name]} and {line}; only the last one would count, "
                                  f"so delete one of them", line)
                else:
                    seen[name] = line
            yield from duplicate_keys(value, (*loc, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from duplicate_keys(item, (*loc, i))


# what PyYAML says, and what it means to someone editing the file
_YAML_WORDS = [
    ("cannot start any token", "\\t", "a tab character: YAML indents with spaces only; "
     "replace the tab with spaces"),
    ("expected <block end>", "", "the indentation does not line up: this line is indented "
     "differently from the entries above it; entries of one list or section start in the "
     "same column"),
    ("did not find expected key", "", "the indentation does not line up: this line is "
     "indented differently from the entries above it"),
    ("did not find expected '-' indicator", "", "the indentation does not line up: a list "
     "entry here needs a '- ' in the same column as the entries above it"),
    ("mapping values are not allowed here", "", "a 'name: value' where none can be: this "
     "line is probably indented too far (it continues the line above), or a value holding "
     "': ' needs quotes"),
    ("expected ',' or ']'", "", "a [ ... ] list is not closed, or a value in it needs quotes"),
    ("expected ',' or '}'", "", "a { ... } section is not closed, or a value in it needs quotes"),
    ("found unexpected end of stream", "", "the file ends inside quoted text: a quote (\" or ') "
     "is not closed"),
    ("found undefined alias", "", "a '*name' refers to an '&name' that is not defined; "
     "quote the value if the '*' is meant as text"),
    ("special characters are not allowed", "", "the file holds a character that cannot be in "
     "a text file; is this the config?"),
    ("found character", "", "a value starts with a character that needs quotes (` @ % |); "
     "put the value in quotes"),
]


def yaml_problem(exc: yaml.YAMLError) -> Problem:
    """One plain sentence, with the line and column, for a file PyYAML cannot read."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, yaml.reader.ReaderError):
        text = ("not a text file: it holds a character a YAML file cannot hold; check that -c "
                "names the config and not another file")
        return Problem("", text, None)
    for fragment, also, meaning in _YAML_WORDS:
        if fragment in problem and also in problem:
            text = meaning
            break
    else:
        text = "the file cannot be read as YAML here; check the indentation and the quotes"
    if mark is None:
        return Problem("", f"not valid YAML: {text}")
    return Problem("", f"not valid YAML: {text}", mark.line + 1, mark.column + 1)


def line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest YAML node the path reaches (a key's own line for
    mapping entries)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if node is None:
            break
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            nxt = None
            for key, value in node.value:
                if getattr(key, "value", None) == part:
                    nxt, line = value, key.start_mark.line + 1
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if 0 <= part < len(node.value) else None
            if node is not None:
                line = node.start_mark.line + 1
        else:
            node = None
    return line
