"""What a comparison must meet: the tolerance of a precision, its checks and the precision ranks."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from importlib import resources

import tomllib

from ..errors import HarnessError

# Finer precisions rank higher: a reference may not be coarser than the backends it judges.
PRECISION_RANK = {"fp32": 3, "bf16": 2, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    min_cosine: float
    min_top1_agreement: float
    max_accuracy_drop: float
    # A top-1 flip where the reference's top-1 logit leads its top-2 by more than this is a defect,
    # whatever the agreement rate: near-ties may flip at lower precision, confident clips may not.
    confident_margin: float = 2.0

    def to_dict(self) -> dict:
        return asdict(self)


# atol/rtol are non-negative; the others are fractions. Every value must be finite: a NaN
# tolerance makes every comparison "pass" (NaN compares false), so it is refused everywhere.
_FRACTIONS = ("min_cosine", "min_top1_agreement", "max_accuracy_drop")


def check_tolerance_value(name: str, value, where: str) -> float:
    """``value`` as a valid number for tolerance field ``name``, or a HarnessError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise HarnessError(f"{where}: {name} must be a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise HarnessError(f"{where}: {name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise HarnessError(f"{where}: {name} must be a finite number, not {value!r}")
    if number < 0:
        raise HarnessError(f"{where}: {name} must not be negative (got {value!r})")
    if name in _FRACTIONS and number > 1:
        raise HarnessError(f"{where}: {name} is a fraction and must lie in [0, 1] (got {value!r})")
    return number


def default_tolerances() -> dict[str, Tolerance]:
    """The shipped tolerance of each precision (defaults.toml, where the choices are explained)."""
    text = resources.files("parity").joinpath("defaults.toml").read_text()
    return {prec: Tolerance(**vals) for prec, vals in tomllib.loads(text)["tolerance"].items()}
