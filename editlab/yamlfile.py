"""Reading a YAML file of settings (hyperparameters, a grid, limits) with errors that name the file."""
from __future__ import annotations


def read_yaml_mapping(path: str, what: str = "hyperparameters") -> dict:
    """A YAML file that must hold a mapping (``{}`` when empty), with errors that name the file."""
    import os

    import yaml

    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder; give a YAML file of {what}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (a YAML file of {what})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text; give a YAML file of {what}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{path}: not valid YAML{where} ({getattr(e, 'problem', None) or e}); "
                         "check the indentation and quoting") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of {what} (key: value lines) at the top level, "
                         f"got a {type(data).__name__}")
    return data
