"""Prices: every default model priced out of the box (genai-prices, no litellm), policy overrides,
cached-input and cache-write rates, wildcard names, and the report's price list naming each source."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import genai_prices
import orjson
import pytest
import yaml

from gateway.cli import main
from gateway.policy import Policy, load_policy
from gateway.pricing import PriceBook

DEFAULT_POLICY = Path(__file__).parents[1] / "policies" / "default.yaml"
FIXTURE = Path(__file__).parent / "data" / "ledger_fixture.jsonl"
GENAI = f"genai-prices {genai_prices.__version__}"


def policy(models: dict[str, Any], **provider: Any) -> Policy:
    return Policy.model_validate(
        {"providers": {"p": {"base_url": "http://127.0.0.1:9/v1", **provider}}, "models": models}
    )


def library_cost(model: str, **usage: int) -> float:
    """What genai-prices itself computes for that usage: the reference the book must agree with."""
    result = genai_prices.calc_price(genai_prices.Usage(**usage), model, provider_id="openai")
    return float(result.total_price)


def test_every_default_model_has_a_price_without_litellm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "litellm", None)  # `import litellm` now fails: as if not installed
    default = load_policy(DEFAULT_POLICY, env={})
    book = PriceBook.from_policy(default)
    configured = [name for name in default.models if name != "*"]
    assert len(configured) == 6
    for name in configured:
        price = book.price(name)
        assert price is not None, f"{name} has no price"
        assert price.source == GENAI
        assert price.input > 0
        expected = library_cost(name, input_tokens=1000, output_tokens=100)
        assert book.cost(name, 1000, 100) == pytest.approx(expected)
    # chat models have a cheaper cached-input rate; the embedding model bills input only
    assert all(book.price(name).cached_input < book.price(name).input for name in configured[:5])  # type: ignore[union-attr]
    assert book.price("text-embedding-3-small").output == 0  # type: ignore[union-attr]


def test_cached_input_is_priced_at_the_cached_rate() -> None:
    book = PriceBook.from_policy(policy({"gpt-4.1": {"provider": "p"}}))
    cost = book.cost("gpt-4.1", 1000, 100, cached=600)
    assert cost == pytest.approx(
        library_cost("gpt-4.1", input_tokens=1000, cache_read_tokens=600, output_tokens=100)
    )
    assert cost < book.cost("gpt-4.1", 1000, 100)  # type: ignore[operator]


def test_cache_writes_use_the_libraries_write_rate() -> None:
    provider = {"type": "litellm", "litellm_prefix": "anthropic/", "base_url": ""}
    book = PriceBook.from_policy(
        policy({"sonnet": {"provider": "p", "upstream_model": "claude-sonnet-4-5"}}, **provider)
    )
    price = book.price("sonnet")
    assert price is not None and price.source == GENAI
    assert price.cache_write > price.input > price.cached_input  # Anthropic: writes 1.25x, reads 0.1x
    assert book.cost("sonnet", 1000, 0, cache_write=1000) == pytest.approx(1000 * price.cache_write)


def test_a_policy_price_wins_and_cached_input_defaults_to_the_input_rate() -> None:
    book = PriceBook.from_policy(
        policy(
            {
                "gpt-4o-mini": {
                    "provider": "p",
                    "price": {"input_per_mtok": 1, "output_per_mtok": 4, "cached_input_per_mtok": 0.25},
                },
                "gpt-4.1": {"provider": "p", "price": {"input_per_mtok": 2, "output_per_mtok": 8}},
            }
        )
    )
    mini = book.price("gpt-4o-mini")
    assert mini is not None and mini.source == "policy"
    assert book.cost("gpt-4o-mini", 1_000_000, 1_000_000, cached=400_000) == pytest.approx(
        0.6 * 1 + 0.4 * 0.25 + 4
    )
    assert book.cost("gpt-4.1", 1_000_000, 0, cached=1_000_000) == pytest.approx(2.0)  # no discount claimed


def test_wildcard_names_are_priced_on_first_sight_and_unknown_names_have_none() -> None:
    book = PriceBook.from_policy(policy({"*": {"provider": "p"}}))
    assert book.prices == {}  # nothing configured by name: nothing resolved at start
    assert book.price("gpt-4o") is not None and book.price("gpt-4o").source == GENAI  # type: ignore[union-attr]
    assert book.cost("no-such-model-xyz", 10, 10) is None
    assert (
        PriceBook.from_policy(policy({"gpt-4.1": {"provider": "p"}})).price("gpt-4o") is None
    )  # no wildcard


def write_policy(tmp_path: Path) -> Path:
    body = yaml.safe_load(DEFAULT_POLICY.read_text())
    body["models"]["gpt-4.1"]["price"] = {"input_per_mtok": 3, "output_per_mtok": 12}
    body["models"]["self-hosted"] = {"provider": "openai", "upstream_model": "my-finetune-7b"}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def report(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--ledger", str(FIXTURE), *args])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_the_report_lists_each_models_price_and_its_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_policy(tmp_path))
    table = report(capsys, "--config", config)
    rows = {line.split()[0]: line for line in table.split("\nPrices\n", 1)[1].splitlines()[2:] if line}
    assert rows["gpt-4.1"].split()[1:] == ["$3", "$3", "$12", "policy"]
    assert rows["gpt-4o-mini"].split()[1:] == ["$0.15", "$0.075", "$0.6", *GENAI.split()]
    assert (
        rows["self-hosted"].split()[1:4] == ["n/a", "n/a", "n/a"]
        and "models.NAME.price" in rows["self-hosted"]
    )
    prices = orjson.loads(report(capsys, "--config", config, "--format", "json"))["prices"]
    assert prices["gpt-4.1"]["source"] == "policy" and prices["o3"]["source"] == GENAI
    assert prices["gpt-4o-mini"]["cached_input_per_mtok"] == pytest.approx(0.075)
    assert prices["self-hosted"] is None
