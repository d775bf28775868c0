"""The pricing policy: a TOML file that says how revenue becomes royalties.

Money in a policy is written as a decimal string in major units (``"25.00"``) or an integer
(also major units); TOML floats are refused for money because they are not exact. Ratios
(``platform_share``, ``min_share``...) may be strings or numbers and are read as exact decimals
(a TOML float is read through its shortest repr, so ``0.3`` is exactly 3/10).

Example (see ``cli/demo_corpus/policy.toml`` for every field with its meaning)::

    policy = load_policy("policy.toml")
    policy.to_minor("25.00")   # 2500 with minor_units = 2

Every field is validated when the policy is loaded; a bad one raises :class:`ConfigError`
naming the file, the field and the fix.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

_CURRENCY_RE = re.compile(r"^[A-Z][A-Z0-9]{2,9}$")
PERIODS = ("month", "quarter")
NEGATIVE_RULES = ("clip", "error")
RESIDUAL_RULES = ("unattributed", "renormalise")
RESIDUAL_ACCOUNTS = ("unattributed", "platform")

_KNOWN = {
    "policy": {"name", "currency", "minor_units", "period"},
    "pools": {"platform_share", "training_share", "output_share"},
    "output_pool": {"negative", "min_share", "top_k", "residual", "residual_account"},
    "training_pool": {"residual_account"},
    "payout": {"minimum", "cap_per_holder", "cap_excess_account"},
    "fees": {"fixed_per_work"},
    "unlearning": {
        "gpu_hour_price", "seconds_per_forgotten_token", "tokens_per_word", "fixed_cost",
        "utility_loss_per_work", "retrain_gpu_hours",
    },
    "quote": {"horizon_periods"},
    "claims": {
        "name", "compensate_below", "unlearn_at", "retrain_every_days", "next_retrain", "at_risk_days",
        "default_deadline_days", "guard_max_words", "guard_action",
    },
}
GUARD_ACTIONS = ("redact", "block")


@dataclass(frozen=True)
class ClaimsPolicy:
    """The ``[claims]`` table: how a claim's remedy is decided and when removals are batched.

    ``compensate_below`` / ``unlearn_at`` are attribution shares (exact decimals): for a claim with
    remedy ``either``, a share below ``compensate_below`` is paid, a share at or above
    ``unlearn_at`` is removed, and in between the cheaper side of the quote wins. A removal is
    batched into the next scheduled retrain (``next_retrain``, then every ``retrain_every_days``)
    when that retrain comes on or before the claim's deadline; otherwise it is unlearned now.
    """

    name: str = "claims-default"
    compensate_below: Decimal = Decimal("0.05")
    unlearn_at: Decimal = Decimal("0.20")
    retrain_every_days: int = 90
    next_retrain: date | None = None         # None: no retrain scheduled (removals are unlearned now)
    at_risk_days: int = 14                   # a claim due within this many days is at risk
    default_deadline_days: int = 0           # deadline given to claims filed without one (0: none)
    guard_max_words: int = 12                # the output guard redacts verbatim spans longer than this
    guard_action: str = "redact"             # "redact" the spans or "block" the whole output

    def settings(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    @property
    def policy_hash(self) -> str:
        return "sha256:" + hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class UnlearningCostModel:
    """Configured cost of unlearning, used by ``tribute quote`` when nothing was measured."""

    gpu_hour_price: Decimal = Decimal("2.50")       # major units per GPU-hour
    seconds_per_forgotten_token: Decimal = Decimal("0.002")  # GPU-seconds per forget-set token
    tokens_per_word: Decimal = Decimal("1.3")
    fixed_cost: Decimal = Decimal("0")              # evaluation and certificate overhead, major units
    utility_loss_per_work: Decimal = Decimal("0.001")  # fraction of projected revenue lost per work
    retrain_gpu_hours: Decimal = Decimal("0")       # shown for comparison (retraining from scratch)


@dataclass(frozen=True)
class PricingPolicy:
    """A validated pricing policy. Build it with :func:`load_policy` / :func:`parse_policy`."""

    name: str
    currency: str
    minor_units: int = 2
    period: str = "month"
    platform_share: Decimal = Decimal("0.30")
    training_share: Decimal = Decimal("0.40")
    output_share: Decimal = Decimal("0.60")
    negative: str = "clip"
    min_share: Decimal = Decimal("0")
    top_k: int = 0                       # 0 = keep every attributed work
    residual: str = "unattributed"
    output_residual_account: str = "unattributed"
    training_residual_account: str = "unattributed"
    minimum_payout: int = 0              # minor units
    cap_per_holder: int = 0              # minor units per period, 0 = no cap
    cap_excess_account: str = "unattributed"
    fixed_fee_per_work: int = 0          # minor units per exposed work per period
    unlearning: UnlearningCostModel = field(default_factory=UnlearningCostModel)
    horizon_periods: int = 12
    claims: ClaimsPolicy = field(default_factory=ClaimsPolicy)  # not part of the pricing hash
    source: str = "<policy>"
    text: str = ""

    @property
    def scale(self) -> int:
        return 10 ** self.minor_units

    @property
    def policy_hash(self) -> str:
        """A hash of the validated settings (not of the file's comments or layout)."""
        return "sha256:" + hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()

    def settings(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        d.pop("text")
        d.pop("claims")
        return json.loads(json.dumps(d, default=str))

    def to_minor(self, value: Any, what: str = "amount") -> int:
        """A major-unit decimal (string, int or Decimal) as integer minor units, exactly."""
        return decimal_to_minor(value, self.minor_units, what)

    def format(self, minor: int) -> str:
        """Integer minor units as a decimal string in major units (``2500`` -> ``"25.00"``)."""
        return format_minor(minor, self.minor_units)

    def split_weights(self) -> tuple[int, int, int]:
        """Integer weights of (platform, training pool, output pool) for one revenue event."""
        p = self.platform_share
        parts = [p, (1 - p) * self.training_share, (1 - p) * self.output_share]
        exp = max(-min(x.as_tuple().exponent for x in parts), 0)  # type: ignore[operator]
        ints = [int(x.scaleb(exp)) for x in parts]
        g = math.gcd(*ints) or 1
        return tuple(i // g for i in ints)  # type: ignore[return-value]


def format_minor(minor: int, minor_units: int) -> str:
    sign = "-" if minor < 0 else ""
    q, r = divmod(abs(int(minor)), 10 ** minor_units)
    return f"{sign}{q}.{r:0{minor_units}d}" if minor_units else f"{sign}{q}"


def decimal_to_minor(value: Any, minor_units: int, what: str = "amount") -> int:
    """Exact conversion of a major-unit decimal to minor units; refuses floats and extra digits."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ConfigError(f"{what}: {value!r} is a float; write money as a string like \"12.34\"")
    try:
        d = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation as e:
        raise ConfigError(f"{what}: {value!r} is not a decimal number; write it like \"12.34\"") from e
    if not d.is_finite():
        raise ConfigError(f"{what}: {value!r} is not a finite number")
    scaled = d.scaleb(minor_units)
    if scaled != scaled.to_integral_value():
        raise ConfigError(f"{what}: {value!r} has more than {minor_units} decimal places")
    return int(scaled)


def _ratio(src: str, key: str, value: Any, *, lo: Decimal = Decimal(0), hi: Decimal = Decimal(1)) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{src}: {key} must be a number between {lo} and {hi}, got {value!r}")
    try:
        d = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation as e:
        raise ConfigError(f"{src}: {key} = {value!r} is not a number; write it like \"0.25\"") from e
    if not d.is_finite() or d < lo or d > hi:
        raise ConfigError(f"{src}: {key} = {value!r} must be between {lo} and {hi}")
    return d


def _money(src: str, key: str, value: Any, minor_units: int) -> int:
    try:
        m = decimal_to_minor(value, minor_units, f"{src}: {key}")
    except ConfigError:
        raise
    if m < 0:
        raise ConfigError(f"{src}: {key} = {value!r} must not be negative")
    return m


def _choice(src: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{src}: {key} = {value!r}; use one of {', '.join(choices)}")
    return value


def _int(src: str, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{src}: {key} = {value!r} must be a whole number from {lo} to {hi}")
    return value


def _claims(src: str, c: Mapping[str, Any]) -> ClaimsPolicy:
    """The validated ``[claims]`` table (defaults for missing keys)."""
    d = ClaimsPolicy()
    name = c.get("name", d.name)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{src}: claims.name must be a non-empty string")
    low = _ratio(src, "claims.compensate_below", c.get("compensate_below", str(d.compensate_below)))
    high = _ratio(src, "claims.unlearn_at", c.get("unlearn_at", str(d.unlearn_at)))
    if low > high:
        raise ConfigError(f"{src}: claims.compensate_below = {low} is above claims.unlearn_at = {high}; "
                          "make compensate_below <= unlearn_at")
    nxt = c.get("next_retrain")
    if nxt is not None:
        if isinstance(nxt, str):
            try:
                nxt = date.fromisoformat(nxt.strip())
            except ValueError as e:
                raise ConfigError(f"{src}: claims.next_retrain = {nxt!r}; write a date like 2027-01-15") from e
        elif not isinstance(nxt, date) or hasattr(nxt, "hour"):
            raise ConfigError(f"{src}: claims.next_retrain = {nxt!r}; write a date like 2027-01-15")
    return ClaimsPolicy(
        name=name.strip(), compensate_below=low, unlearn_at=high,
        retrain_every_days=_int(src, "claims.retrain_every_days", c.get("retrain_every_days", d.retrain_every_days),
                                1, 36500),
        next_retrain=nxt,
        at_risk_days=_int(src, "claims.at_risk_days", c.get("at_risk_days", d.at_risk_days), 0, 36500),
        default_deadline_days=_int(src, "claims.default_deadline_days",
                                   c.get("default_deadline_days", d.default_deadline_days), 0, 36500),
        guard_max_words=_int(src, "claims.guard_max_words", c.get("guard_max_words", d.guard_max_words), 1, 10000),
        guard_action=_choice(src, "claims.guard_action", c.get("guard_action", d.guard_action), GUARD_ACTIONS),
    )


def parse_policy(text: str, source: str = "<policy>") -> PricingPolicy:
    """Validate the TOML ``text`` of a policy. Raises :class:`ConfigError` naming the field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML ({e}); fix the syntax") from e
    for section, value in doc.items():
        if section not in _KNOWN:
            raise ConfigError(f"{source}: unknown section [{section}]; known: {', '.join(sorted(_KNOWN))}")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {section} must be a [{section}] table")
        for key in value:
            if key not in _KNOWN[section]:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key}; known: {', '.join(sorted(_KNOWN[section]))}"
                )
    pol = doc.get("policy")
    if not pol or "currency" not in pol or "name" not in pol:
        raise ConfigError(f"{source}: needs a [policy] table with name and currency")
    name = pol["name"]
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{source}: policy.name must be a non-empty string")
    currency = pol["currency"]
    if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
        raise ConfigError(f"{source}: policy.currency = {currency!r}; use an upper-case code like \"EUR\"")
    mu = _int(source, "policy.minor_units", pol.get("minor_units", 2), 0, 8)
    period = _choice(source, "policy.period", pol.get("period", "month"), PERIODS)

    pools = doc.get("pools", {})
    platform = _ratio(source, "pools.platform_share", pools.get("platform_share", "0.30"))
    training = _ratio(source, "pools.training_share", pools.get("training_share", "0.40"))
    output = _ratio(source, "pools.output_share", pools.get("output_share", "0.60"))
    if training + output != 1:
        raise ConfigError(
            f"{source}: pools.training_share + pools.output_share = {training + output}; they must add up to 1"
        )
    op = doc.get("output_pool", {})
    tp = doc.get("training_pool", {})
    pay = doc.get("payout", {})
    fees = doc.get("fees", {})
    un = doc.get("unlearning", {})
    q = doc.get("quote", {})
    claims = _claims(source, doc.get("claims", {}))
    big = Decimal(10) ** 12
    model = UnlearningCostModel(
        gpu_hour_price=_ratio(source, "unlearning.gpu_hour_price", un.get("gpu_hour_price", "2.50"), hi=big),
        seconds_per_forgotten_token=_ratio(
            source, "unlearning.seconds_per_forgotten_token", un.get("seconds_per_forgotten_token", "0.002"), hi=big
        ),
        tokens_per_word=_ratio(source, "unlearning.tokens_per_word", un.get("tokens_per_word", "1.3"), hi=Decimal(100)),
        fixed_cost=_ratio(source, "unlearning.fixed_cost", un.get("fixed_cost", "0"), hi=big),
        utility_loss_per_work=_ratio(source, "unlearning.utility_loss_per_work", un.get("utility_loss_per_work", "0.001")),
        retrain_gpu_hours=_ratio(source, "unlearning.retrain_gpu_hours", un.get("retrain_gpu_hours", "0"), hi=big),
    )
    return PricingPolicy(
        name=name.strip(),
        currency=currency,
        minor_units=mu,
        period=period,
        platform_share=platform,
        training_share=training,
        output_share=output,
        negative=_choice(source, "output_pool.negative", op.get("negative", "clip"), NEGATIVE_RULES),
        min_share=_ratio(source, "output_pool.min_share", op.get("min_share", "0")),
        top_k=_int(source, "output_pool.top_k", op.get("top_k", 0), 0, 10**6),
        residual=_choice(source, "output_pool.residual", op.get("residual", "unattributed"), RESIDUAL_RULES),
        output_residual_account=_choice(
            source, "output_pool.residual_account", op.get("residual_account", "unattributed"), RESIDUAL_ACCOUNTS
        ),
        training_residual_account=_choice(
            source, "training_pool.residual_account", tp.get("residual_account", "unattributed"), RESIDUAL_ACCOUNTS
        ),
        minimum_payout=_money(source, "payout.minimum", pay.get("minimum", "0"), mu),
        cap_per_holder=_money(source, "payout.cap_per_holder", pay.get("cap_per_holder", "0"), mu),
        cap_excess_account=_choice(
            source, "payout.cap_excess_account", pay.get("cap_excess_account", "unattributed"), RESIDUAL_ACCOUNTS
        ),
        fixed_fee_per_work=_money(source, "fees.fixed_per_work", fees.get("fixed_per_work", "0"), mu),
        unlearning=model,
        horizon_periods=_int(source, "quote.horizon_periods", q.get("horizon_periods", 12), 1, 1200),
        claims=claims,
        source=source,
        text=text,
    )


def load_policy(path: str | os.PathLike) -> PricingPolicy:
    """Read and validate a policy file. Raises :class:`ConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{p}: no such policy file; pass --policy PATH (see cli/demo_corpus/policy.toml)") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read the policy ({e}); save it as UTF-8 TOML") from e
    return parse_policy(text, str(p))


def policy_from_settings(settings: Mapping[str, Any], source: str = "<stored>") -> PricingPolicy:
    """Rebuild a policy from :meth:`PricingPolicy.settings` (how the ledger stores it)."""
    s = dict(settings)
    un = UnlearningCostModel(**{k: Decimal(str(v)) for k, v in s.pop("unlearning").items()})
    dec = {"platform_share", "training_share", "output_share", "min_share"}
    kw = {k: (Decimal(str(v)) if k in dec else v) for k, v in s.items()}
    return PricingPolicy(**kw, unlearning=un, source=source)


__all__ = [
    "ClaimsPolicy", "PricingPolicy", "UnlearningCostModel", "parse_policy", "load_policy", "policy_from_settings",
    "decimal_to_minor", "format_minor",
]
