"""Reading what a visitor or a file hands in, bounded before it is used.

Every value that comes from YAML, JSON, CSV or a text box is checked here for size and depth
before anything else looks at it, and every message that quotes such a value quotes a bounded
:func:`short` form of it: a few hundred bytes (a YAML alias bomb, a deeply nested list) can
neither exhaust memory nor produce a message of millions of characters. Imports nothing from
editlab.
"""

from __future__ import annotations

import reprlib

MAX_DEPTH = 12  # nesting of lists and mappings in one value (hyperparameters nest 2 deep)
MAX_NODES = 20_000  # scalars, lists and mappings in one value, aliases counted as often as used
MAX_TEXT_CHARS = 1_000_000  # one YAML or JSON document of settings (a hyperparameter file, a grid)
MAX_MESSAGE_CHARS = 2_000  # one error message shown to a user


class BoundError(ValueError):
    """A value is too large or too deeply nested to use."""


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 6, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def short(value, limit: int = 80) -> str:
    """``repr(value)`` bounded to ``limit`` characters, computed without building the whole repr
    (a value shared a million times, or holding itself, costs no more than a small one)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a repr that fails must not hide the message it was for
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """An error message cut to ``limit`` characters (the end says how much was left out)."""
    text = str(text)
    if len(text) <= limit:
        return text
    return text[: limit - 40].rstrip() + f" … ({len(text) - limit + 40:,} characters left out)"


def check_tree(
    value, what: str, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES, max_chars: int = MAX_TEXT_CHARS
) -> None:
    """Raise :class:`BoundError` naming ``what`` when ``value`` nests deeper than ``max_depth``,
    holds more than ``max_nodes`` items (an alias counts each time it is used, so a YAML alias
    bomb is stopped after ``max_nodes`` steps, not after expanding it), or more than ``max_chars``
    characters of text in all. A value that holds itself exceeds the depth. Iterative: no
    recursion limit is reached however deep the value is."""
    stack = [(value, 1)]
    nodes = chars = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise BoundError(
                f"{what}: holds more than {max_nodes:,} values (a YAML anchor used many times counts "
                "each time); give a smaller value"
            )
        if isinstance(item, (str, bytes)):
            chars += len(item)
            if chars > max_chars:
                raise BoundError(f"{what}: holds more than {max_chars:,} characters of text; give a smaller value")
            continue
        if isinstance(item, dict):
            children = [x for kv in item.items() for x in kv]
        elif isinstance(item, (list, tuple, set, frozenset)):
            children = list(item)
        else:
            continue
        if children and depth >= max_depth:
            raise BoundError(
                f"{what}: nested more than {max_depth} levels deep; a setting is a number, a text or a short list"
            )
        stack.extend((c, depth + 1) for c in children)


def _loader(max_depth: int = MAX_DEPTH):
    """A safe YAML loader that refuses a mapping holding one key twice (the last would silently win)
    and stops at the ``max_depth + 1``-th unclosed '[' or '{'."""
    import yaml

    class DuplicateKey(yaml.constructor.ConstructorError):
        pass

    class TooDeep(yaml.scanner.ScannerError):
        pass

    class Loader(yaml.SafeLoader):
        def fetch_flow_collection_start(self, TokenClass):
            # PyYAML's scanner revisits every unclosed '[' and '{' at each token, so "[" * 1000 costs
            # seconds before the recursion limit stops it (minutes where that limit is raised); no
            # value nested deeper than max_depth is accepted, so stop reading there
            if self.flow_level >= max_depth:
                raise TooDeep(None, None, f"nested more than {max_depth} levels deep", self.get_mark())
            super().fetch_flow_collection_start(TokenClass)

        def construct_mapping(self, node, deep=False):
            if not isinstance(node, yaml.MappingNode):  # `!!map [1]`, `!!set x`: SafeLoader's error says what it found
                return super().construct_mapping(node, deep=deep)
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # SafeLoader's own error names it
                if key in seen:
                    raise DuplicateKey(
                        None,
                        None,
                        f"the key {short(key)} appears twice in one mapping (first at line {seen[key]}); "
                        "give each key once",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    return Loader


def load_yaml(text: str, what: str, **bounds):
    """Parse ``text`` as YAML (safe tags only), refusing text over ``MAX_TEXT_CHARS``, duplicate
    keys, nesting beyond the recursion limit and values beyond :func:`check_tree`'s bounds.
    Raises ValueError naming ``what`` (a file name, ``--set lr``, a box's label)."""
    import yaml

    if len(text) > bounds.get("max_chars", MAX_TEXT_CHARS):
        raise BoundError(
            f"{what}: {len(text):,} characters is more than the "
            f"{bounds.get('max_chars', MAX_TEXT_CHARS):,} a YAML text of settings may hold"
        )
    try:
        data = yaml.load(text, Loader=_loader(bounds.get("max_depth", MAX_DEPTH)))  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise BoundError(f"{what}: nested too deeply to read; a setting is a number, a text or a short list") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        if type(e).__name__ == "DuplicateKey":
            raise ValueError(f"{what}{where}: {problem}") from None
        if type(e).__name__ == "TooDeep":
            raise BoundError(f"{what}{where}: {problem}; a setting is a number, a text or a short list") from None
        raise ValueError(
            message(f"{what}: not valid YAML{where} ({problem}); check the indentation and quoting", 400)
        ) from None
    except (ValueError, OverflowError, LookupError, AttributeError, TypeError) as e:
        # a value PyYAML's constructors cannot build, which they report with any error: `!!float x` and
        # a date that is no date (2001-13-45) a ValueError quoting it whole, `!!bool maybe` a KeyError,
        # `!!int ''` an IndexError, `!!timestamp x` an AttributeError; an int of more digits than Python converts
        raise ValueError(
            message(
                f"{what}: a value cannot be read ({type(e).__name__}: {e}); give a number, a text or a short list", 400
            )
        ) from None
    check_tree(data, what, **bounds)
    return data


def whole(value, what: str, lo: int = 1) -> int:
    """``value`` as a whole number >= ``lo`` (a float with no fraction is taken; a bool, a
    fraction, a text or anything else is refused with a ValueError naming ``what``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise ValueError(f"{what}: {short(value)} is not a whole number; give one of at least {lo}")
    if value < lo:
        raise ValueError(f"{what}: {short(value)} is less than {lo}; give a whole number of at least {lo}")
    return int(value)
