"""Helpers for the Helm chart tests: render with Helm's own code (helm-python-sdk, no binary), read
metric names out of PromQL, and read exported metric names out of a Prometheus exposition."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "llm-gateway"
RELEASE, NAMESPACE = "llmgw", "agents"
FULLNAME = f"{RELEASE}-llm-gateway"


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders for ``values`` (as ``helm template`` would), in template order."""
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values or {})
        manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[dict[str, Any]] = []
    for path in sorted(manifests):
        if not path.endswith(".yaml"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(manifests[path]) if doc)
    return objects


def notes(values: dict[str, Any] | None = None) -> str:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def containers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]}


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def policy_text(objects: list[dict[str, Any]]) -> str:
    return str(one(objects, "ConfigMap", f"{FULLNAME}-policy")["data"]["policy.yaml"])


def alert_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rules = by_kind(objects, "PrometheusRule")
    return [rule for r in rules for group in r["spec"]["groups"] for rule in group["rules"]]


# --- PromQL ----------------------------------------------------------------------------------------

_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "atan2",
    }
)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)\b(?!\s*\()")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*(\w+)\s*\)\s*$")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords, labels,
    durations or Grafana variables."""
    text = _without_strings(expr)
    text = _MATCHERS.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    return {name for name in _IDENT.findall(text) if name.lower() not in _KEYWORDS}


def promql_label_names(expr: str) -> set[str]:
    """Label names an expression matches on or groups by."""
    text = _without_strings(expr)
    labels = {m for body in _MATCHERS.findall(text) for m in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", body)}
    for group in _GROUPING.findall(text):
        labels.update(name.strip() for name in group.split(",") if name.strip())
    return labels


def grafana_query_exprs(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: panel targets (rows included) and query variables."""
    exprs: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        query = query.get("query", "") if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(query)
        exprs.append(match.group(1) or "" if match else query)
    return [e for e in exprs if e.strip()]


def _without_strings(expr: str) -> str:
    return _STRING.sub('""', expr)


# --- Exposition ------------------------------------------------------------------------------------

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("_sum", "_count", "_created"),
    "info": ("_info",),
}


def exported_metrics(exposition: str) -> dict[str, set[str]]:
    """Every series name a scrape can be queried by, with the label names seen on it.

    Families come from the ``# HELP``/``# TYPE`` lines as well as the samples, so a labelled metric that
    has no series yet still counts, under each name its type gives it (``_total`` for counters,
    ``_bucket``/``_sum``/``_count`` for histograms, ...)."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        if family.type not in _SUFFIXES:  # gauges, untyped: the family name is the series name
            names.setdefault(family.name, set())
        for suffix in _SUFFIXES.get(family.type, ()):
            names.setdefault(family.name + suffix, set())
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


# --- CRD schemas -----------------------------------------------------------------------------------

SCHEMAS = ROOT / "tests" / "schemas"


def _strict(node: Any) -> Any:
    """An ``openAPIV3Schema`` node as a JSON schema that rejects what the API server would prune."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_validator(file: str) -> Callable[[dict[str, Any]], None]:
    """Validate an object of a vendored CRD (tests/schemas/README.md): its apiVersion and kind, then its
    whole body against the CRD's schema; raises ``jsonschema.ValidationError``."""
    crd = json.loads((SCHEMAS / file).read_text())
    validator = jsonschema.Draft7Validator(_strict(crd["openAPIV3Schema"]))

    def validate(obj: dict[str, Any]) -> None:
        assert obj["apiVersion"] == f"{crd['group']}/{crd['version']}", obj["apiVersion"]
        assert obj["kind"] == crd["kind"], obj["kind"]
        validator.validate(obj)

    return validate
