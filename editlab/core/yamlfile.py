"""Reading a YAML file of settings (hyperparameters, a grid, limits) with errors that name the file,
bounded in size and depth (:mod:`editlab.core.bounded`) and refusing a key given twice."""

from __future__ import annotations


def read_yaml_mapping(path: str, what: str = "hyperparameters") -> dict:
    """A YAML file that must hold a mapping (``{}`` when empty), with errors that name the file."""
    import os

    from editlab.core.bounded import MAX_TEXT_CHARS, load_yaml

    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder; give a YAML file of {what}")
    try:
        size = os.path.getsize(path)
        if size > 4 * MAX_TEXT_CHARS:
            raise ValueError(
                f"{path}: {size:,} bytes is more than a YAML file of {what} may hold ({MAX_TEXT_CHARS:,} characters)"
            )
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (a YAML file of {what})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text; give a YAML file of {what}") from None
    data = load_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a mapping of {what} (key: value lines) at the top level, got a {type(data).__name__}"
        )
    return data
