"""The learning contract as DataHub custom properties, and back.

DataHub's `datasetProperties.customProperties` is a string-to-string map, so everything the
pipeline needs to know about a dataset is written there as text (see docs in DESIGN.md):

    target=MathAch  task_type=regression  meta.Sector=Public  meta.Size=842
    hypernet.registered_at=2026-12-04T20:01:02.123456+00:00  hypernet.validation=passed ...

Numbers and booleans are read back typed (`512` is an int, `0.5` a float, `true` a bool). A string
meta-feature that happens to look like a number (a zip code "10115") would come back as an int, so
such keys are listed in `hypernet.text.<prefix>` (e.g. `hypernet.text.meta=zip`) and stay strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone

from catalog.errors import CatalogError
from catalog.records import Scalar

TARGET = "target"
TASK_TYPE = "task_type"
META = "meta."
STAT = "stat."
NS = "hypernet."
REGISTERED_AT = NS + "registered_at"
UPDATED_AT = NS + "updated_at"
VALIDATION = NS + "validation"
VALIDATION_REASON = NS + "validation_reason"
VALIDATED_AT = NS + "validated_at"
ONBOARDED_VERSION = NS + "onboarded_model_version"
ONBOARDED_AT = NS + "onboarded_at"

# Keys describing the data as registered; changing any of them makes the status stale.
STATUS_KEYS = (VALIDATION, VALIDATION_REASON, VALIDATED_AT, ONBOARDED_VERSION, ONBOARDED_AT)
CONTRACT_KEYS = (TARGET, TASK_TYPE)

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_INT = re.compile(r"^[+-]?[0-9]+$")


def text_keys_property(prefix: str) -> str:
    return f"{NS}text.{prefix.rstrip('.')}"


def check_name(kind: str, value: object, fix: str) -> str:
    """Names end up in property keys, URNs and SQL filters: keep them plain identifiers."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise CatalogError(f"{kind} {value!r} is not usable: use letters, digits, '_', '.' or '-'; {fix}")
    return value


def check_key(kind: str, key: object, dataset: str) -> str:
    return check_name(f"dataset {dataset!r}: {kind} name", key, "e.g. 'altitude_m'")


def to_scalar(kind: str, key: str, value: object, dataset: str) -> Scalar:
    """Accept str/int/float/bool and numpy scalars; refuse lists, dicts, None, NaN and infinities."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # numpy / pandas scalar -> Python scalar
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CatalogError(
                f"dataset {dataset!r}: {kind} {key!r} is {value!r}; give a finite number, "
                "or leave the key out (a missing meta-feature is masked, not an error)"
            )
        return value
    raise CatalogError(
        f"dataset {dataset!r}: {kind} {key!r} must be a single str, int, float or bool, "
        f"got {type(value).__name__} {value!r}; store one scalar per key "
        "(e.g. split a list into several keys)"
    )


def encode_scalar(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def decode_scalar(text: str) -> Scalar:
    """Read a property value back: `true`/`false`, integers and finite floats become numbers.

    Lenient on purpose (`0.50`, `TRUE`, `+3` also parse) so values typed into the DataHub UI come
    back typed; strings we wrote that merely look numeric are protected by the text-keys list.
    """
    if text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    if _INT.match(text.strip()):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def encode_group(prefix: str, values: Mapping[str, Scalar], dataset: str) -> dict[str, str]:
    """`{'Size': 842}` -> `{'meta.Size': '842'}` plus the list of strings that look like numbers."""
    kind = "meta-feature" if prefix == META else "statistic"
    props: dict[str, str] = {}
    text_keys: list[str] = []
    for key, raw in values.items():
        value = to_scalar(kind, check_key(kind, key, dataset), raw, dataset)
        props[prefix + key] = encode_scalar(value)
        if isinstance(value, str) and decode_scalar(value) != value:
            text_keys.append(key)
    if text_keys:
        props[text_keys_property(prefix)] = ",".join(sorted(text_keys))
    return props


def decode_group(prefix: str, props: Mapping[str, str]) -> dict[str, Scalar]:
    text_keys = set(filter(None, props.get(text_keys_property(prefix), "").split(",")))
    out: dict[str, Scalar] = {}
    for key, text in props.items():
        if key.startswith(prefix):
            name = key[len(prefix) :]
            out[name] = text if name in text_keys else decode_scalar(text)
    return out


def without_group(prefix: str, props: Mapping[str, str]) -> dict[str, str]:
    return {
        k: v for k, v in props.items() if not k.startswith(prefix) and k != text_keys_property(prefix)
    }


def encode_time(when: datetime) -> str:
    """UTC ISO-8601 with microseconds, so string order is time order. Naive times are taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="microseconds")


def decode_time(text: str | None) -> datetime | None:
    if not text:
        return None
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
