"""The documentation stays true: the policy reference matches the schema, and every link lands somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase

from gateway import metrics
from gateway.autoscaler import metrics as autoscaler_metrics
from gateway.policy import Policy
from gateway.policy.reference import COMMAND, anchor, render, section_models

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_policy_reference_is_current() -> None:
    written = (ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
    assert written == render(), f"docs/policy.md is stale: run `{COMMAND}`"


def test_every_policy_key_is_documented() -> None:
    missing = [
        f"{path}.{name}" if path else name
        for path, model in section_models(Policy)
        for name, field in model.model_fields.items()
        if not field.description
    ]
    missing += [f"{path} (the section)" for path, model in section_models(Policy) if not model.__doc__]
    assert not missing, "write a docstring after each of these fields: " + ", ".join(missing)


def links(page: Path) -> list[str]:
    """The targets of the page's Markdown links, outside code."""
    text = _CODE.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))
    return _LINK.findall(text)


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings (a repeated heading gets ``-1``, ``-2``...)."""
    found: set[str] = set()
    for line in _FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        if match := re.match(r"#{1,6} (.+)", line):
            slug = base = anchor(match.group(1))
            n = 0
            while slug in found:
                n += 1
                slug = f"{base}-{n}"
            found.add(slug)
    return found


def broken_links(page: Path) -> list[str]:
    """Relative links of the page to a file that does not exist, or to a heading the file lacks."""
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target} (no such heading)")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert not broken_links(page), f"{page.name}: broken links: {', '.join(broken_links(page))}"


def test_link_checker_finds_missing_files_and_headings(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# A heading\n\n## A heading\n\n## `store.url`\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-heading-1) [ok](other.md#storeurl) `[code](nowhere.md)` [self](#title)\n"
        "# Title\n[gone](missing.md) [bad](other.md#nope) [web](https://example.com/x)\n",
        encoding="utf-8",
    )
    assert broken_links(page) == ["missing.md (no such file)", "other.md#nope (no such heading)"]


def test_every_metric_is_documented() -> None:
    names = {
        obj._name + ("_total" if obj._type == "counter" else "")
        for module in (metrics, autoscaler_metrics)
        for obj in vars(module).values()
        if isinstance(obj, MetricWrapperBase)
    }
    names |= set(re.findall(r'GaugeMetricFamily\(\s*"(\w+)"', Path(metrics.__file__).read_text()))
    documented = set(re.findall(r"`(\w+)`", (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")))
    assert names - documented == set(), "add these metrics to docs/metrics.md"
    assert {"llm_cache_hit_rate", "autoscaler_errors_total"} <= names


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    command = ci.replace(" --quiet", "")
    assert command in (ROOT / "README.md").read_text(encoding="utf-8"), f"README must show: {command}"
