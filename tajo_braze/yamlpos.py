"""Where things are in a YAML document, and how to say what is wrong with them.

Configuration and mapping files are edited by hand, so every problem must name the file, the
line and a fix. This module parses YAML safely (SafeLoader only), maps every JSON path of the
document to the line it starts on, and turns JSON-Schema errors into located `Problem`s with
a fix a marketer can act on. `config` and `mapping` both use it, so the wording is the same.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Problem

if TYPE_CHECKING:
    import jsonschema

JsonPath = tuple[str | int, ...]

# Hand-written files are small. These bounds turn hostile input (a "billion laughs" of YAML
# aliases, a recursive anchor, thousands of nested brackets) into a clear problem instead of a
# hang or a RecursionError.
MAX_DEPTH = 40
MAX_VALUES = 50_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlReadError(Exception):
    """The document could not be read at all; carries the one problem that says why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.render())
        self.problem = problem


# ---------------------------------------------------------------- locating
@dataclass(frozen=True)
class Where:
    """A place in a document: the file, its line table, and the path of the part being checked.

    `hidden` lists document paths whose values must never be echoed (secrets, and values
    that came from environment variables).
    """

    source: str
    lines: Mapping[JsonPath, int] = field(default_factory=dict)
    base: JsonPath = ()
    hidden: frozenset[JsonPath] = frozenset()

    def full(self, rel: Sequence[str | int] = ()) -> JsonPath:
        return self.base + tuple(rel)

    def line(self, rel: Sequence[str | int] = ()) -> int | None:
        path = self.full(rel)
        while True:
            line = self.lines.get(path)
            if line is not None:
                return line
            if not path:
                return None
            path = path[:-1]

    def path(self, rel: Sequence[str | int] = ()) -> str:
        return render_path(self.full(rel))

    def sub(self, rel: Sequence[str | int]) -> Where:
        return Where(self.source, self.lines, self.full(rel), self.hidden)

    def is_hidden(self, rel: Sequence[str | int]) -> bool:
        path = self.full(rel)
        return any(path[: len(h)] == h for h in self.hidden)

    def problem(self, rel: Sequence[str | int], message: str, fix: str = "") -> Problem:
        return Problem(self.source, self.line(rel), self.path(rel), message, fix)


def render_path(path: Sequence[str | int]) -> str:
    """`("connectors", "braze", "lists", "a.b", 0)` -> `connectors.braze.lists["a.b"][0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and all(c.isalnum() or c in "_-" for c in part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


class LocatedMapping(Mapping[str, Any]):
    """A read-only mapping cut out of a YAML document that remembers where it came from.

    An inline `field_mapping` travels inside `Config` like this, so that validating it later
    still names the configuration file and the line of each rule.
    """

    __slots__ = ("_data", "where")

    def __init__(self, data: Mapping[str, Any], where: Where) -> None:
        self._data = dict(data)
        self.where = where

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)


# ---------------------------------------------------------------- reading
@dataclass(frozen=True)
class YamlDocument:
    source: str
    data: Any
    lines: Mapping[JsonPath, int]
    duplicate_keys: tuple[tuple[JsonPath, int], ...] = ()

    def where(self, *, hidden: frozenset[JsonPath] = frozenset()) -> Where:
        return Where(self.source, self.lines, (), hidden)


def read_yaml_file(path: Path, *, source: str, what: str) -> YamlDocument:
    """Read and parse a YAML file; any failure is a `YamlReadError` with a fix."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise YamlReadError(
            Problem(
                source,
                None,
                "",
                f"{what} file not found",
                f"create it, or point to an existing file (looked for {path})",
            )
        ) from None
    except IsADirectoryError:
        raise YamlReadError(
            Problem(source, None, "", f"{what} path is a directory", "give the path of a YAML file")
        ) from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise YamlReadError(
            Problem(
                source,
                None,
                "",
                f"{what} file cannot be read: {reason}",
                "check the path and its permissions",
            )
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise YamlReadError(
            Problem(
                source,
                line,
                "",
                f"{what} file is not UTF-8 text",
                "save it as UTF-8 (it may be a binary file)",
            )
        ) from None
    return parse_yaml(text, source=source, what=what)


def parse_yaml(text: str, *, source: str, what: str = "YAML") -> YamlDocument:
    """Parse one YAML document with the SafeLoader; return its data and a line for every path."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(source, None, {})
        lines, duplicates = _walk_nodes(node)
        data = to_plain(loader.construct_document(node), source=source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlReadError(Problem(source, line, "", _syntax_message(exc), _syntax_fix(exc))) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        raise YamlReadError(
            Problem(
                source,
                line,
                "",
                f"{what} file contains a character YAML does not allow (U+{code:04X})",
                "remove it; the file must be plain UTF-8 text",
            )
        ) from None
    except yaml.YAMLError as exc:
        raise YamlReadError(
            Problem(source, None, "", f"YAML error: {exc}", "check the file's syntax")
        ) from None
    except RecursionError:
        raise YamlReadError(_too_deep(source)) from None
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDocument(source, data, lines, tuple(duplicates))


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (exc.context, exc.problem) if p]
    return "YAML syntax error: " + ("; ".join(parts) if parts else "unreadable")


def _syntax_fix(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or ""
    if "\\t" in problem or "'\\t'" in problem or "\t" in problem:
        return "indent with spaces, not tabs"
    if "unhashable" in (problem + (exc.context or "")):
        return "keys must be plain words, not lists or mappings"
    if "expected a single document" in (exc.context or "") + problem:
        return "keep one document per file (remove the extra `---`)"
    return "check indentation and quoting near this line (a value containing `: ` or ` #` needs quotes)"


def _too_deep(source: str) -> Problem:
    return Problem(
        source,
        None,
        "",
        f"the document nests deeper than {MAX_DEPTH} levels",
        "flatten it; configuration and mappings need only a few levels",
    )


def key_text(key: Any) -> str:
    """The text of a mapping key as used in paths (YAML may load `10:` as an int, `yes:` as a bool)."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


def to_plain(value: Any, *, source: str) -> Any:
    """A bounded copy with text keys: mappings -> dict, sequences -> list, scalars kept.

    Refuses documents deeper than MAX_DEPTH or larger than MAX_VALUES once YAML aliases are
    expanded (which also catches recursive structures).
    """
    budget = [MAX_VALUES]

    def copy(v: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise YamlReadError(
                Problem(
                    source,
                    None,
                    "",
                    f"the document holds more than {MAX_VALUES} values (after expanding YAML aliases)",
                    "write a smaller document",
                )
            )
        if depth > MAX_DEPTH:
            raise YamlReadError(_too_deep(source))
        if isinstance(v, Mapping):
            return {key_text(k): copy(x, depth + 1) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [copy(x, depth + 1) for x in v]
        return v

    return copy(value, 0)


def _walk_nodes(root: Node) -> tuple[dict[JsonPath, int], list[tuple[JsonPath, int]]]:
    """Line of every path (1-based) and every key written twice in the same mapping."""
    lines: dict[JsonPath, int] = {(): root.start_mark.line + 1}
    duplicates: list[tuple[JsonPath, int]] = []
    constructor = SafeConstructor()
    budget = [MAX_VALUES]
    on_stack: set[int] = set()

    def walk(node: Node, path: JsonPath) -> None:
        budget[0] -= 1
        if budget[0] < 0 or len(path) > MAX_DEPTH or id(node) in on_stack:
            return  # to_plain reports the size, depth or recursion problem
        on_stack.add(id(node))
        if isinstance(node, MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                name = _node_key_text(constructor, key_node)
                child = (*path, name)
                if name in seen:
                    duplicates.append((child, key_node.start_mark.line + 1))
                    continue
                seen.add(name)
                lines[child] = key_node.start_mark.line + 1
                walk(value_node, child)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                child = (*path, index)
                lines[child] = item.start_mark.line + 1
                walk(item, child)
        on_stack.discard(id(node))

    walk(root, ())
    return lines, duplicates


def _node_key_text(constructor: SafeConstructor, node: Node) -> str:
    if isinstance(node, ScalarNode):
        try:
            return key_text(constructor.construct_object(node))
        except yaml.YAMLError:
            return str(node.value)
    return f"<{type(node).__name__}>"


def locate_lines(text: str, *, source: str = "<text>") -> dict[JsonPath, int]:
    """Line (1-based) of every JSON path of a YAML text; the helper both loaders share."""
    return dict(parse_yaml(text, source=source).lines)


def duplicate_key_problems(doc: YamlDocument) -> list[Problem]:
    return [
        Problem(
            doc.source,
            line,
            render_path(path),
            f"key `{path[-1]}` is written twice; the last one would silently win",
            "keep only one of them",
        )
        for path, line in doc.duplicate_keys
    ]


def read_packaged_text(name: str) -> str:
    """A text file shipped in `tajo_braze/data/`."""
    try:
        return resources.files("tajo_braze").joinpath(f"data/{name}").read_text(encoding="utf-8")
    except (NotADirectoryError, TypeError):
        # An editable install made before the package had its __init__ exposes it as a
        # namespace package, which importlib.resources cannot read; the files sit beside us.
        return (Path(__file__).parent / "data" / name).read_text(encoding="utf-8")


def load_packaged_schema(name: str) -> dict[str, Any]:
    """A JSON Schema shipped in `tajo_braze/data/` (identical copies live in `schemas/` for editors)."""
    schema: dict[str, Any] = json.loads(read_packaged_text(name))
    return schema


# ---------------------------------------------------------------- schema errors -> problems
_TYPE_WORDS = {
    "boolean": "a boolean (true/false)",
    "integer": "a whole number (e.g. 100)",
    "number": "a number",
    "string": "text (quote it if it looks like a number, a date or true/false)",
    "object": "a mapping (indented `key: value` lines)",
    "array": "a list (`[a, b]`, or lines starting with `- `)",
    "null": "nothing (leave the value empty)",
}


def describe(value: Any, *, show_value: bool = True) -> str:
    """A short, user-facing description of a value: `'yes' (text)`, `12 (a number)`."""
    if value is None:
        kind = "nothing"
    elif isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int | float):
        kind = "a number"
    elif isinstance(value, str):
        kind = "text"
    elif isinstance(value, Mapping):
        return "a mapping"
    elif isinstance(value, list | tuple):
        return "a list"
    elif isinstance(value, datetime | date):
        kind = "a date"
    else:
        return f"a {type(value).__name__}"
    if not show_value or value is None:
        return kind
    text = repr(value) if not isinstance(value, datetime | date) else value.isoformat()
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({kind})"


def close_match(word: str, candidates: Sequence[str]) -> str | None:
    """The candidate a typo most likely meant (case-insensitive), or None."""
    if not candidates:
        return None
    lowered = {c.lower(): c for c in candidates}
    found = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[found[0]] if found else None


def resolve_ref(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local `$ref` (`#/$defs/x`); the schemas here use no other kind."""
    seen = 0
    while isinstance(schema, Mapping) and "$ref" in schema and seen < 10:
        target: Any = root
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            target = target[part]
        schema = target
        seen += 1
    return schema


def schema_problems(schema: Mapping[str, Any], instance: Any, where: Where) -> list[Problem]:
    """Every JSON-Schema (draft 2020-12) violation of `instance`, located and with a fix."""
    # Imported here: processes that only map records (export line workers) never validate a
    # file, and jsonschema with its dependencies weighs several megabytes in each of them.
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    problems: list[Problem] = []
    for error in validator.iter_errors(instance):
        problems.extend(_translate(error, schema, where))
    return problems


def _translate(error: jsonschema.ValidationError, root: Mapping[str, Any], where: Where) -> list[Problem]:
    rel: JsonPath = tuple(error.absolute_path)
    kind = error.validator
    value = error.instance
    sub = error.schema if isinstance(error.schema, Mapping) else {}
    name = f"`{rel[-1]}`" if rel and isinstance(rel[-1], str) else ("the value" if rel else "the document")
    show = not where.is_hidden(rel)
    described = describe(value, show_value=show)
    hint = str(sub.get("description", ""))

    if "propertyNames" in error.absolute_schema_path:
        key = str(value)
        guess = close_match(key, [str(o) for o in error.validator_value]) if kind == "enum" else None
        fix = f"did you mean `{guess}`?" if guess else (f"expected {hint}" if hint else "rename it")
        return [where.problem((*rel, key), f"`{key}` is not a valid name here", fix)]
    if kind == "additionalProperties" and isinstance(value, Mapping):
        allowed = sorted(sub.get("properties", {}))
        extras = [k for k in value if k not in sub.get("properties", {})]
        return [_unknown_key(where, rel, str(k), allowed, sub, root) for k in extras]
    if kind == "type":
        expected = (
            error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        )
        words = (
            hint
            if hint and len(expected) > 1
            else " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in expected)
        )
        return [where.problem(rel, f"{name} has the wrong type: got {described}", f"expected {words}")]
    if kind in ("enum", "const"):
        options = [str(o) for o in (error.validator_value if kind == "enum" else [error.validator_value])]
        guess = close_match(str(value), options) if isinstance(value, str) else None
        fix = (f"did you mean `{guess}`? " if guess else "") + "allowed: " + " | ".join(options)
        return [where.problem(rel, f"{name} is {described}, which is not an allowed value", fix)]
    if kind == "required":
        missing = [m for m in error.validator_value if isinstance(value, Mapping) and m not in value]
        parent = where.path(rel) or "the top level"
        return [
            where.problem(rel, f"missing required key `{m}`", f"add `{m}:` under {parent}") for m in missing
        ]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        low, high = sub.get("minimum"), sub.get("maximum")
        if low is not None and high is not None:
            fix = f"use a value from {low} to {high}"
        elif low is not None:
            fix = f"use a value of at least {low}"
        else:
            fix = f"use a value of at most {high}"
        return [where.problem(rel, f"{name} is {described}, out of range", fix)]
    if kind == "minLength":
        return [
            where.problem(rel, f"{name} is empty", "give it a value, or remove the key to use the default")
        ]
    if kind == "maxLength":
        return [where.problem(rel, f"{name} is too long", f"use at most {error.validator_value} characters")]
    if kind == "minProperties":
        return [
            where.problem(rel, f"{name} is empty", f"expected {hint}" if hint else "add at least one entry")
        ]
    if kind == "uniqueItems":
        return [where.problem(rel, f"{name} lists the same entry twice", "remove the duplicates")]
    if kind == "pattern":
        return [
            where.problem(
                rel,
                f"{name} is {described}, which is not valid here",
                f"expected {hint}" if hint else f"it must match {error.validator_value}",
            )
        ]
    if kind in ("anyOf", "oneOf"):
        return [
            where.problem(
                rel,
                f"{name} is {described}, which is not valid here",
                f"expected {hint}" if hint else "see the schema for the allowed forms",
            )
        ]
    message = error.message if show else f"{name} is not valid"
    return [where.problem(rel, message, f"expected {hint}" if hint else "")]


def _unknown_key(
    where: Where,
    rel: JsonPath,
    key: str,
    allowed: Sequence[str],
    sub: Mapping[str, Any],
    root: Mapping[str, Any],
) -> Problem:
    message = f"unknown key `{key}`"
    guess = close_match(key, allowed)
    if guess is not None:
        return where.problem((*rel, key), message, f"did you mean `{guess}`?")
    # A key written one level too high (`users:` beside `sync:` instead of under it) is common.
    for parent in allowed:
        child = resolve_ref(sub.get("properties", {}).get(parent, {}), root)
        child_keys = list(child.get("properties", {})) if isinstance(child, Mapping) else []
        nested_guess = close_match(key, child_keys)
        if nested_guess is not None:
            return where.problem(
                (*rel, key), message, f"did you mean `{parent}.{nested_guess}`? (move it under `{parent}:`)"
            )
    return where.problem((*rel, key), message, "remove it; allowed keys: " + ", ".join(allowed))


def sort_problems(problems: Sequence[Problem]) -> list[Problem]:
    """Stable order by line so the report reads top to bottom; unlocated problems last."""
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))
