"""The pricing policy: the documented example parses, and every bad field is named."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tribute.core.errors import ConfigError
from tribute.market.policy import (decimal_to_minor, format_minor, load_policy, parse_policy,
                                   policy_from_settings)

EXAMPLE = Path(__file__).resolve().parents[1] / "cli" / "demo_corpus" / "policy.toml"
MINIMAL = '[policy]\nname = "p"\ncurrency = "EUR"\n'


def test_example_policy_parses_with_documented_values():
    p = load_policy(EXAMPLE)
    assert (p.name, p.currency, p.minor_units, p.period) == ("example-2026", "EUR", 2, "month")
    assert p.platform_share == Decimal("0.50") and p.training_share + p.output_share == 1
    assert p.minimum_payout == 500 and p.fixed_fee_per_work == 50 and p.top_k == 5
    assert p.min_share == Decimal("0.02")
    assert p.unlearning.gpu_hour_price == Decimal("2.50")
    # the split weights are exact integers in the policy's proportions
    assert p.split_weights() == (5, 2, 3)


def test_defaults_and_hash_is_stable_and_roundtrips():
    p = parse_policy(MINIMAL)
    assert p.split_weights() == (15, 14, 21)
    assert p.policy_hash == parse_policy("# comment\n" + MINIMAL).policy_hash
    assert policy_from_settings(p.settings()).policy_hash == p.policy_hash
    assert parse_policy(MINIMAL + '[payout]\nminimum = "1.00"\n').policy_hash != p.policy_hash


@pytest.mark.parametrize("extra, needle", [
    ('[payout]\nminimum = 25.5\n', "float"),
    ('[payout]\nminimum = "1.234"\n', "decimal places"),
    ('[payout]\nminimum = "-1"\n', "negative"),
    ('[pools]\ntraining_share = "0.5"\noutput_share = "0.6"\n', "add up to 1"),
    ('[pools]\nplatform_share = 1.5\n', "between"),
    ('[output_pool]\nnegative = "ignore"\n', "output_pool.negative"),
    ('[output_pool]\ntop_k = -1\n', "output_pool.top_k"),
    ('[output_pool]\nmin_shar = 0.1\n', "unknown key output_pool.min_shar"),
    ('[pool]\nx = 1\n', "unknown section [pool]"),
])
def test_bad_fields_are_named(extra, needle):
    with pytest.raises(ConfigError) as e:
        parse_policy(MINIMAL + extra, "p.toml")
    assert needle in str(e.value) and str(e.value).startswith("p.toml")
    assert "\n" not in str(e.value)


def test_bad_header_and_syntax():
    with pytest.raises(ConfigError, match="currency"):
        parse_policy('[policy]\nname = "p"\ncurrency = "euro"\n')
    with pytest.raises(ConfigError, match="needs a \\[policy\\]"):
        parse_policy('[pools]\nplatform_share = 0.3\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_policy('[policy\n')
    with pytest.raises(ConfigError, match="no such policy file"):
        load_policy("/nonexistent/policy.toml")


def test_money_conversion_is_exact():
    assert decimal_to_minor("12.34", 2) == 1234
    assert decimal_to_minor("12", 2) == 1200
    assert decimal_to_minor(7, 0) == 7
    assert format_minor(-1234, 2) == "-12.34" and format_minor(5, 2) == "0.05" and format_minor(5, 0) == "5"
    with pytest.raises(ConfigError):
        decimal_to_minor(0.1, 2)
