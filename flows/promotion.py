"""The promotion gate: does a newly trained version replace the champion?

A new version is promoted (alias `champion`) only if all three hold; otherwise it becomes `challenger`:
1. overall it is at least as good as the champion (a first version, with no champion, passes);
2. no dataset known to both got worse than under the champion by more than `max_dataset_regression`;
3. overall it beats the pooled baseline (one model for all datasets), or the hypernetwork is not worth it.

Pure Python on plain numbers, so the rules are tested without any service.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Mapping

CHAMPION, CHALLENGER = "champion", "challenger"
SHOWN_OFFENDERS = 5  # worst datasets named in the reasons
EPS = 1e-9           # float noise: 0.20 - 0.15 must not count as more than 0.05


@dataclass
class Decision:
    promote: bool
    alias: str                      # "champion" when promoted, else "challenger"
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{'promote to' if self.promote else 'keep as'} {self.alias}: " + "; ".join(self.reasons)


def decide(new_overall: float, new_per_dataset: Mapping[str, float], pooled_overall: float | None,
           champion_overall: float | None, champion_per_dataset: Mapping[str, float] | None,
           max_dataset_regression: float, higher_is_better: bool = True, metric: str = "R²") -> Decision:
    """Apply the three rules. `reasons` holds the failed rules when rejected, every rule's evidence when promoted.

    `pooled_overall` None (or -inf; +inf when lower is better) means no pooled baseline was trained: rule 3
    is skipped and says so. A NaN pooled score fails it."""
    checks = [
        _overall_rule(new_overall, champion_overall, higher_is_better, metric),
        _dataset_rule(new_per_dataset, champion_per_dataset, champion_overall is None and not champion_per_dataset,
                      max_dataset_regression, higher_is_better, metric),
        _pooled_rule(new_overall, pooled_overall, higher_is_better, metric),
    ]
    failed = [r for ok, rs in checks if not ok for r in rs]
    if failed:
        return Decision(False, CHALLENGER, failed)
    return Decision(True, CHAMPION, [r for _, rs in checks for r in rs])


def backward_transfer(new_per_dataset: Mapping[str, float], champion_per_dataset: Mapping[str, float]) -> float:
    """Mean of (new − champion) over the datasets both scored; NaN when they share none.

    Positive: the new version is better on the champion's datasets (for a higher-is-better metric)."""
    diffs = [new_per_dataset[d] - champion_per_dataset[d] for d in _shared(new_per_dataset, champion_per_dataset)]
    return sum(diffs) / len(diffs) if diffs else math.nan


# ---- the rules: (passed, reasons) ---------------------------------------------------------------------
def _overall_rule(new: float, champion: float | None, higher: bool, metric: str) -> tuple[bool, list[str]]:
    if not _number(new):
        return False, [f"overall {metric} of the new version is not a number ({new})"]
    if champion is None or not _number(champion):
        return True, ["first version: no champion"]
    ok = new >= champion if higher else new <= champion
    if ok:
        return True, [f"overall {metric} {new:.3f} {'≥' if higher else '≤'} champion {champion:.3f}"]
    return False, [f"overall {metric} {new:.3f} {'<' if higher else '>'} champion {champion:.3f}"]


def _dataset_rule(new: Mapping[str, float], champion: Mapping[str, float] | None, first: bool, limit: float,
                  higher: bool, metric: str) -> tuple[bool, list[str]]:
    if first:
        return True, []
    shared = _shared(new, champion or {})
    if not shared:
        return True, ["no dataset scored by both the new version and the champion"]
    # change > 0: better; loss = -change
    change = {d: (new[d] - champion[d]) * (1 if higher else -1) for d in shared}
    worst = sorted(shared, key=lambda d: change[d])
    offenders = [d for d in worst if -change[d] > limit + EPS]
    if not offenders:
        d = worst[0]
        return True, [f"worst dataset change {_signed(change[d])} ({d}; max loss {limit:.3f}) over {len(shared)} "
                      "datasets shared with the champion"]
    reasons = [f"{d} lost {-change[d]:.3f} {metric} against the champion ({champion[d]:.3f} → {new[d]:.3f}; "
               f"max {limit:.3f})" for d in offenders[:SHOWN_OFFENDERS]]
    if len(offenders) > SHOWN_OFFENDERS:
        reasons.append(f"and {len(offenders) - SHOWN_OFFENDERS} more of {len(shared)} shared datasets lost more "
                       f"than {limit:.3f}")
    return False, reasons


def _pooled_rule(new: float, pooled: float, higher: bool, metric: str) -> tuple[bool, list[str]]:
    if not _number(new):
        return False, []  # already reported by the overall rule
    if pooled is None or pooled == (-math.inf if higher else math.inf):
        return True, ["no pooled baseline in this run: nothing to beat"]
    if not _number(pooled):
        return False, [f"pooled baseline {metric} is not a number ({pooled}): cannot show the hypernetwork is worth it"]
    ok = new > pooled if higher else new < pooled
    if ok:
        return True, [f"beats pooled {pooled:.3f} ({metric} {new:.3f})"]
    return False, [f"overall {metric} {new:.3f} does not beat the pooled baseline {pooled:.3f}"]


def _shared(a: Mapping[str, float], b: Mapping[str, float]) -> list[str]:
    return [d for d in a if d in b and _number(a[d]) and _number(b[d])]


def _number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _signed(v: float) -> str:
    return f"{v:+.3f}".replace("-", "−")
