"""From a data location to a DataHub dataset URN, and the checks that keep that mapping exact.

DESIGN.md: `urn:li:dataset:(urn:li:dataPlatform:<s3|file>,<bucket/key or path>,PROD)`, the name
is the data's location. DataHub percent-encodes `,` `(` `)` inside URNs, so a location holding
them would not read back as itself: such names are refused rather than silently mangled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from datahub.metadata.urns import DatasetUrn

from catalog.errors import CatalogError

ENV = "PROD"
_RESERVED = re.compile(r"[,()\u241f\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Location:
    platform: str  # "s3" or "file"
    name: str  # the URN's name part: "bucket/key" or an absolute path
    uri: str  # how the pipeline addresses the data: "s3://bucket/key" or the absolute path

    @property
    def urn(self) -> str:
        return str(DatasetUrn(self.platform, self.name, ENV))

    @property
    def stem(self) -> str:
        """A short display name: the file name without its extension."""
        return PurePosixPath(self.name).stem or self.name


def parse_location(location: str | Path) -> Location:
    """Accept `s3://bucket/key`, `file:///abs/path` or a local path (made absolute)."""
    text = str(location).strip()
    if not text:
        raise CatalogError("a dataset location is empty; give `s3://bucket/key` or a file path")
    bad = _RESERVED.search(text)
    if bad:
        raise CatalogError(
            f"dataset location {text!r} cannot be a DataHub URN: {bad.group()!r} is reserved in URNs; "
            "rename the file or folder (letters, digits, spaces and - _ . / are safe)"
        )
    if text.startswith("s3://"):
        name = text[len("s3://") :].strip("/")
        if "/" not in name:
            raise CatalogError(f"dataset location {text!r} names a bucket, not an object; give s3://bucket/key")
        return Location("s3", name, "s3://" + name)
    if "://" in text and not text.startswith("file://"):
        raise CatalogError(
            f"dataset location {text!r} uses an unsupported scheme; give s3://bucket/key or a local path"
        )
    path = Path(text[len("file://") :] if text.startswith("file://") else text).expanduser().resolve()
    return Location("file", path.as_posix(), path.as_posix())


def location_from_urn(urn: str) -> Location:
    parsed = DatasetUrn.from_string(urn)
    uri = "s3://" + parsed.name if parsed.platform.endswith(":s3") else parsed.name
    return Location(parsed.platform.rsplit(":", 1)[-1], parsed.name, uri)


def check_inside_lake(loc: Location, lake: str | None, dataset: str) -> None:
    """Fleet data must live in the lake so every flow can read it with the same credentials."""
    if lake is None:
        return
    root = parse_location(lake)
    inside = loc.platform == root.platform and loc.name.startswith(root.name.rstrip("/") + "/")
    if not inside:
        raise CatalogError(
            f"dataset {dataset!r} at {loc.uri} is outside the data lake {root.uri}; "
            "import it with `hypernet catalog import` (which writes it into the lake) "
            "or copy it under the lake first"
        )
