"""Trim OpenAI's OpenAPI file to the operations the gateway serves, plus every ``$ref`` they reach.

The full file (openai/openai-openapi, ``openapi.yaml``) is ~3 MB; the conformance test needs five
operations. Redo the trim after updating the source file::

    python -m tests.openapi_trim path/to/openapi.yaml tests/data/openai-openapi/openapi.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

OPERATIONS = {
    "/chat/completions": ("post",),
    "/completions": ("post",),
    "/embeddings": ("post",),
    "/models": ("get",),
    "/models/{model}": ("get",),
}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _resolve(spec: dict[str, Any], ref: str) -> Any:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def reached(spec: dict[str, Any], refs: set[str]) -> dict[str, dict[str, Any]]:
    """The components ``refs`` name and every one they reach (transitively), by section."""
    seen: set[str] = set()
    todo = set(refs)
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        todo |= _refs(_resolve(spec, ref)) - seen
    components: dict[str, dict[str, Any]] = {}
    for ref in sorted(seen):
        section, name = ref.removeprefix("#/components/").split("/", 1)
        components.setdefault(section, {})[name] = spec["components"][section][name]
    return components


def trim(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with only :data:`OPERATIONS` and the components they reach (transitively)."""
    paths = {p: {m: spec["paths"][p][m] for m in methods} for p, methods in OPERATIONS.items()}
    components = reached(spec, _refs(paths))
    security = {"securitySchemes": spec["components"].get("securitySchemes", {})}
    head = {k: spec[k] for k in ("openapi", "info", "servers", "security") if k in spec}
    return {**head, "paths": paths, "components": {**security, **components}}


def main(argv: list[str] | None = None) -> None:
    source, target = (argv or sys.argv[1:])[:2]
    spec = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    Path(target).write_text(yaml.safe_dump(trim(spec), sort_keys=False, allow_unicode=True), encoding="utf-8")


if __name__ == "__main__":
    main()
