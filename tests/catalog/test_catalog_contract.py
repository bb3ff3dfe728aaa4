"""The pure parts: property encoding, locations -> URNs, the lake boundary, column types."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from datahub.metadata.schema_classes import (
    BooleanTypeClass,
    EnumTypeClass,
    NullTypeClass,
    NumberTypeClass,
    StringTypeClass,
    TimeTypeClass,
)

from catalog import CatalogError, fields_from_dtypes
from catalog import contract as c
from catalog.locations import check_inside_lake, location_from_urn, parse_location
from catalog.schema import datahub_type


def test_meta_values_round_trip_with_their_types() -> None:
    meta = {"Sector": "Public", "Size": 842, "MEANSES": -0.43, "urban": True, "zip": "10115", "flag": "true", "big": 1e20}
    props = c.encode_group(c.META, meta, "school_1224")
    assert all(isinstance(v, str) for v in props.values())
    assert props["meta.Size"] == "842" and props["meta.urban"] == "true"
    assert props["hypernet.text.meta"] == "flag,zip"  # strings that would otherwise read as numbers/bools
    back = c.decode_group(c.META, props)
    assert back == meta
    assert [type(back[k]) for k in ("Size", "MEANSES", "urban", "zip")] == [int, float, bool, str]


def test_hand_written_properties_are_typed_leniently() -> None:
    props = {"meta.a": "512", "meta.b": "0.50", "meta.c": "TRUE", "meta.d": "siberia", "meta.e": "nan", "other": "x"}
    assert c.decode_group(c.META, props) == {"a": 512, "b": 0.5, "c": True, "d": "siberia", "e": "nan"}


def test_numpy_scalars_are_accepted_as_python_scalars() -> None:
    np = pytest.importorskip("numpy")
    props = c.encode_group(c.META, {"n": np.int64(3), "x": np.float32(0.5), "b": np.bool_(False)}, "d")
    assert c.decode_group(c.META, props) == {"n": 3, "x": 0.5, "b": False}


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, None, float("nan"), float("inf"), b"raw"])
def test_non_scalar_meta_values_are_refused_with_the_key_named(value: object) -> None:
    with pytest.raises(CatalogError, match=r"dataset 'school_1224'.*meta-feature 'altitude'"):
        c.encode_group(c.META, {"altitude": value}, "school_1224")


def test_times_are_utc_and_sort_as_strings() -> None:
    earlier = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=3)))
    later = datetime(2026, 1, 1, 10, 0)  # naive: taken as UTC, so it is later than 09:00 UTC
    assert c.encode_time(earlier) < c.encode_time(later)
    assert c.decode_time(c.encode_time(earlier)) == earlier


def test_locations_map_to_the_design_urns(tmp_path) -> None:
    s3 = parse_location("s3://fleet-bucket/lake/hsb/1224.parquet")
    assert (s3.platform, s3.name, s3.stem) == ("s3", "fleet-bucket/lake/hsb/1224.parquet", "1224")
    assert s3.urn == "urn:li:dataset:(urn:li:dataPlatform:s3,fleet-bucket/lake/hsb/1224.parquet,PROD)"
    local = parse_location(tmp_path / "lake" / ".." / "lake" / "a.csv")
    assert local.urn == f"urn:li:dataset:(urn:li:dataPlatform:file,{tmp_path}/lake/a.csv,PROD)"
    assert location_from_urn(s3.urn).uri == "s3://fleet-bucket/lake/hsb/1224.parquet"
    assert location_from_urn(local.urn).uri == f"{tmp_path}/lake/a.csv"


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("lake/school,1224.parquet", "',' is reserved"),
        ("lake/school(1).parquet", "'\\(' is reserved"),
        ("lake/a\nb.parquet", "reserved"),
        ("gs://bucket/key", "unsupported scheme"),
        ("s3://bucket-only", "names a bucket"),
        ("  ", "empty"),
    ],
)
def test_names_that_cannot_be_urns_are_refused(location: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        parse_location(location)


def test_lake_boundary(tmp_path) -> None:
    lake = str(tmp_path / "lake")
    check_inside_lake(parse_location(tmp_path / "lake" / "a" / "b.parquet"), lake, "b")
    check_inside_lake(parse_location("s3://bkt/lake/x.parquet"), "s3://bkt/lake", "x")
    for outside in (tmp_path / "lake2" / "b.parquet", tmp_path / "b.parquet", "s3://bkt/lake/x.parquet"):
        with pytest.raises(CatalogError, match=r"dataset 'b'.*outside the data lake.*hypernet catalog import"):
            check_inside_lake(parse_location(outside), lake, "b")


def test_pandas_and_arrow_types_map_to_datahub_types() -> None:
    expected = {
        "int64": NumberTypeClass,
        "Float32": NumberTypeClass,
        "double": NumberTypeClass,
        "bool": BooleanTypeClass,
        "object": StringTypeClass,
        "string[pyarrow]": StringTypeClass,
        "category": EnumTypeClass,
        "datetime64[ns, UTC]": TimeTypeClass,
        "period[M]": NullTypeClass,
    }
    assert {k: type(datahub_type(k).type) for k in expected} == expected
    assert [(f.name, f.native_type) for f in fields_from_dtypes([("a", "int64"), (2, "float64")])] == [
        ("a", "int64"),
        ("2", "float64"),
    ]


def test_the_catalog_package_stays_inside_its_box() -> None:
    """DESIGN.md: catalog/ may import acryl-datahub, never torch, prefect, mlflow (nor flows or pandas)."""
    import subprocess
    import sys

    code = (
        "import sys, catalog, catalog.lite_store, catalog.server_store; "
        "print(sorted(m for m in ('torch', 'prefect', 'mlflow', 'pandas', 'flows', 'great_expectations') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
