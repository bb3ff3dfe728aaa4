"""Column types: from what the data says (pandas / Arrow dtype names) to DataHub's field types.

The caller passes the schema (`fields_from_dtypes(df.dtypes.items())`), so `catalog/` never has
to read data. DataHub keeps the native type too; its own mapper only knows SQL type names, which
is why pandas and Arrow names are mapped here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from datahub.metadata.schema_classes import (
    BooleanTypeClass,
    BytesTypeClass,
    DateTypeClass,
    EnumTypeClass,
    NullTypeClass,
    NumberTypeClass,
    SchemaFieldDataTypeClass,
    StringTypeClass,
    TimeTypeClass,
)

from catalog.errors import CatalogError
from catalog.records import Field

_PREFIXES: tuple[tuple[tuple[str, ...], type], ...] = (
    (("bool",), BooleanTypeClass),
    (("int", "uint", "float", "double", "decimal", "number", "numeric", "halffloat"), NumberTypeClass),
    (("datetime", "timestamp", "time"), TimeTypeClass),
    (("date",), DateTypeClass),
    (("str", "object", "large_string", "utf8", "large_utf8", "varchar", "text"), StringTypeClass),
    (("category", "dictionary"), EnumTypeClass),
    (("binary", "bytes", "large_binary"), BytesTypeClass),
)


def datahub_type(native_type: str) -> SchemaFieldDataTypeClass:
    """`int64` -> NumberType, `string[python]` -> StringType, unknown -> NullType (kept as native)."""
    lowered = native_type.strip().lower()
    for prefixes, cls in _PREFIXES:
        if lowered.startswith(prefixes):
            return SchemaFieldDataTypeClass(type=cls())
    return SchemaFieldDataTypeClass(type=NullTypeClass())


def fields_from_dtypes(dtypes: Iterable[tuple[object, object]]) -> list[Field]:
    """`fields_from_dtypes(df.dtypes.items())` or from `zip(arrow_schema.names, arrow_schema.types)`."""
    return [Field(str(name), str(dtype)) for name, dtype in dtypes]


def coerce_fields(fields: Sequence[Field | tuple[str, str]], dataset: str) -> tuple[Field, ...]:
    """Accept `Field`s or `(name, native_type)` pairs; refuse empty or duplicate column names."""
    out: list[Field] = []
    for item in fields:
        field = item if isinstance(item, Field) else Field(*item)
        if not field.name or not field.name.strip():
            raise CatalogError(f"dataset {dataset!r} has a column with an empty name; name every column")
        out.append(field)
    names = [f.name for f in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CatalogError(f"dataset {dataset!r} has duplicate columns {duplicates}; make column names unique")
    if not out:
        raise CatalogError(f"dataset {dataset!r} has no columns; pass its schema (fields_from_dtypes(df.dtypes.items()))")
    return tuple(out)
