"""What the server backend sends: only the documented GMS endpoints, with the token, synchronously."""

from __future__ import annotations

import json

from catalog_testkit import register

from catalog import open_catalog
from catalog.server_store import __doc__ as server_doc

ENDPOINTS = {
    ("GET", "/config"),
    ("POST", "/aspects?action=ingestProposalBatch"),
    ("GET", "/entitiesV2/"),
    ("GET", "/openapi/relationships/v1/"),
}


def _endpoint(method: str, path: str) -> tuple[str, str]:
    if path.startswith("/entitiesV2/"):
        return method, "/entitiesV2/"
    return method, path.split("?")[0] if path.startswith("/openapi/") or path == "/config" else path


def test_the_server_backend_uses_only_the_documented_endpoints_with_the_token(standin, lake) -> None:
    with open_catalog(backend="server", server_url=standin.url + "/", token="s3cret", lake=str(lake)) as cat:
        a = register(cat, lake, "a", field_mapping={"SES": "ses"})
        cat.set_validation(a.urn, True, "ok", {"n_rows": 47})
        model = cat.publish_model("hypernet-fleet", 1, {"r2": 0.2}, {}, ["champion"], [a.urn])
        assert cat.read_lineage(model).trained_on == (a.urn,)
        assert [r.name for r in cat.list_fleet()] == ["a"]
    used = {_endpoint(r.method, r.path) for r in standin.requests}
    assert used == ENDPOINTS
    assert all(r.headers.get("Authorization") == "Bearer s3cret" for r in standin.requests)
    writes = [r.body for r in standin.requests if r.method == "POST"]
    assert all(w["async"] == "false" for w in writes), "writes are synchronous, so reads see them"
    written = {(p["entityUrn"], p["aspectName"]) for w in writes for p in w["proposals"]}
    assert (a.urn, "schemaMetadata") in written and (model, "versionProperties") in written
    props = json.loads(next(p for w in writes for p in w["proposals"] if p["aspectName"] == "datasetProperties")["aspect"]["value"])
    assert props["customProperties"]["target"] == "MathAch" and props["customProperties"]["meta.Size"] == "842"
    for method, path in ENDPOINTS:  # the module says plainly what it uses and how it is tested
        assert path.split("?")[0].rstrip("/") in server_doc
    assert "stand-in" in server_doc


def test_without_a_token_no_credentials_are_sent(standin, lake) -> None:
    with open_catalog(backend="server", server_url=standin.url, lake=str(lake)) as cat:
        register(cat, lake, "a")
    assert standin.requests and all("Authorization" not in r.headers for r in standin.requests)
