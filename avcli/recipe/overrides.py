"""Command-line overrides of a recipe: `a.b=value` sets (value parsed as a YAML scalar), `~a.b` deletes."""

from __future__ import annotations

from typing import Any

import yaml

from avcli.errors import UsageError


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    """Return a copy of `tree` with every override applied in order."""
    import copy

    tree = copy.deepcopy(tree)
    for item in overrides:
        if item.startswith("~"):
            _delete(tree, item[1:], item)
        elif "=" in item:
            key, _, raw = item.partition("=")
            _set(tree, key.strip(), _parse_scalar(raw, item), item)
        else:
            raise UsageError(f"override {item!r}: expected key.path=value or ~key.path")
    return tree


def _parse_scalar(raw: str, item: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UsageError(f"override {item!r}: the value is not valid YAML ({exc.problem})") from None


def _split(path: str, item: str) -> list[str]:
    parts = path.split(".")
    if not path or any(not p for p in parts):
        raise UsageError(f"override {item!r}: empty key in the dotted path")
    return parts


def _set(tree: dict, path: str, value: Any, item: str) -> None:
    parts = _split(path, item)
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise UsageError(f"override {item!r}: {where} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _delete(tree: dict, path: str, item: str) -> None:
    parts = _split(path, item)
    node = tree
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            break
    if not isinstance(node, dict) or parts[-1] not in node:
        raise UsageError(f"override {item!r}: {path} is not set in the recipe, nothing to delete")
    del node[parts[-1]]
