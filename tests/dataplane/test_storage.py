"""flows.storage.Lake on a local folder and on SeaweedFS: same tests, same guarantees."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import pandas as pd
import pytest

from flows.settings import Settings
from flows.storage import Lake


def frame() -> pd.DataFrame:
    return pd.DataFrame({"age": [31, 45, 67], "bmi": [22.5, None, 30.1], "site": ["a", "b", "c"]})


@pytest.mark.parametrize("key", ["t/one.parquet", "t/one.csv"])
def test_table_round_trip(lake, key):
    uri = lake.write_table(frame(), key)
    assert uri == lake.uri_for(key) and lake.contains(uri) and lake.exists(uri)
    pd.testing.assert_frame_equal(lake.read_table(uri), frame(), check_dtype=False)


def test_identical_rewrite_is_a_noop_and_different_content_is_refused(lake):
    uri = lake.write_table(frame(), "t/x.parquet")
    assert lake.write_table(frame(), "t/x.parquet") == uri
    with pytest.raises(FileExistsError, match="already exists with different content"):
        lake.write_table(frame().assign(age=0), "t/x.parquet")
    assert lake.read_table(uri)["age"].tolist() == [31, 45, 67]
    lake.write_table(frame().assign(age=0), "t/x.parquet", overwrite=True)
    assert lake.read_table(uri)["age"].tolist() == [0, 0, 0]


def test_bytes_list_and_missing(lake):
    lake.write_bytes("w/b.safetensors", b"\x00weights")
    lake.write_bytes("w/a.json", b"{}")
    lake.write_bytes("other/c.json", b"{}")
    lake.write_bytes("wx/d.json", b"{}")  # shares the prefix "w" but not the folder
    assert lake.list("w") == [lake.uri_for("w/a.json"), lake.uri_for("w/b.safetensors")]
    assert lake.read_bytes(lake.uri_for("w/b.safetensors")) == b"\x00weights"
    missing = lake.uri_for("w/none.bin")
    assert not lake.exists(missing)
    with pytest.raises(FileNotFoundError, match="none.bin"):
        lake.read_bytes(missing)


def test_concurrent_writers_cannot_both_win(lake):
    """Create-if-absent is decided atomically (local link / S3 conditional PUT)."""
    outcomes: list[str] = []

    def write(i: int) -> None:
        try:
            lake.write_bytes("race/obj.bin", f"writer {i}".encode())
            outcomes.append(f"wrote {i}")
        except FileExistsError:
            outcomes.append("refused")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("wrote")]
    assert len(winners) == 1 and outcomes.count("refused") == 5
    assert lake.read_bytes(lake.uri_for("race/obj.bin")) == f"writer {winners[0].split()[1]}".encode()


def test_local_writes_leave_no_temporary_files(tmp_path):
    lake = Lake(tmp_path)
    lake.write_bytes("a/b.bin", b"1")
    with pytest.raises(FileExistsError):
        lake.write_bytes("a/b.bin", b"2")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.bin"]


def test_uri_and_contains(tmp_path):
    local = Lake(tmp_path / "lake")
    assert local.uri_for("x/y.csv") == str(tmp_path / "lake" / "x" / "y.csv")
    assert local.contains(str(tmp_path / "lake" / "x")) and not local.contains(str(tmp_path / "elsewhere"))
    s3 = Lake("s3://bucket/prefix/")
    assert s3.uri_for("x/y.csv") == "s3://bucket/prefix/x/y.csv"
    assert s3.contains("s3://bucket/prefix/x") and not s3.contains("s3://bucket/prefixed/x")
    assert not s3.contains(str(tmp_path)) and s3.uri_for("s3://other/k") == "s3://other/k"


def test_from_settings(tmp_path):
    lake = Lake.from_settings(Settings(workspace=tmp_path))
    assert lake.root == str((tmp_path / "lake").resolve()) and not lake.is_s3
    s3 = Lake.from_settings(Settings(workspace=tmp_path, storage={"lake": "s3://b/p", "s3_endpoint_url": "http://h:1"}))
    assert s3.is_s3 and s3.endpoint_url == "http://h:1" and s3.region == "us-east-1"


def test_lake_pickles_without_its_client(s3_env):
    lake = Lake(f"s3://{s3_env.bucket}/pickle", endpoint_url=s3_env.endpoint_url, region="us-east-1")
    lake.write_bytes("a", b"1")
    clone = pickle.loads(pickle.dumps(lake))
    assert clone._client is None and clone.read_bytes(clone.uri_for("a")) == b"1"


def test_transient_s3_errors_are_retried(s3_env):
    """botocore's retry mode resends a PUT after 503 SlowDown answers (no Prefect retry needed)."""
    from botocore.awsrequest import AWSResponse

    lake = Lake(f"s3://{s3_env.bucket}/retry", endpoint_url=s3_env.endpoint_url, region="us-east-1")
    attempts = []

    def flaky(request, **_):
        attempts.append(request.url)
        if len(attempts) <= 2:
            body = b"<Error><Code>SlowDown</Code><Message>slow down</Message></Error>"
            return AWSResponse(request.url, 503, {}, _Raw(body))
        return None  # send it for real

    lake.client.meta.events.register("before-send.s3.PutObject", flaky)
    lake.write_bytes("obj.bin", b"payload")
    assert len(attempts) == 3 and lake.read_bytes(lake.uri_for("obj.bin")) == b"payload"


class _Raw:
    """The minimal raw-response object botocore reads a stubbed body from."""

    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_):
        yield self._body


def test_wrong_credentials_fail_clearly_without_leaking_them(s3_env, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-a-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "super-secret-value")
    lake = Lake(f"s3://{s3_env.bucket}/creds", endpoint_url=s3_env.endpoint_url, region="us-east-1", max_attempts=1)
    with pytest.raises(PermissionError, match="access denied") as err:
        lake.write_bytes("a", b"1")
    assert "super-secret-value" not in str(err.value) and "super-secret-value" not in repr(lake)


def test_settings_profile_reaches_boto3(tmp_path, monkeypatch):
    """An AWS profile named in settings is the credential source (read from the AWS config files)."""
    creds = tmp_path / "credentials"
    creds.write_text("[lab]\naws_access_key_id = AKIALAB\naws_secret_access_key = s3cret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    lake = Lake.from_settings(Settings(workspace=tmp_path, storage={"lake": "s3://b/p", "aws_profile": "lab"}))
    assert lake.client._request_signer._credentials.access_key == "AKIALAB"


def test_read_table_from_outside_the_lake(tmp_path):
    """Catalog locations may point anywhere; reads take full URIs."""
    path = Path(tmp_path / "elsewhere.csv")
    frame().to_csv(path, index=False)
    assert len(Lake(tmp_path / "lake").read_table(str(path))) == 3
