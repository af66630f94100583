"""Against a real S3 implementation (moto's server on 127.0.0.1): presigned URLs (SigV2 and
SigV4), checksum mode, and an object overwritten while a segmented download runs.

S3 ignores ``If-Range`` (a stale one gets a 206 of the new object) and honours ``If-Match``
(412): the download must end with one version whole, never a splice.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from dltui.ledger import Ledger, events, jobs
from dltui.model import JobState
from tests.conftest import TEST_ENV, wait_for
from tests.engine.helpers import blob, sha

MiB = 1 << 20
BUCKET = "dltui-interop"


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[object, object]]:
    """A moto S3 server and two clients: SigV2 (the default for presigning) and SigV4."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    common = {"endpoint_url": f"http://{host}:{port}", "region_name": "us-east-1",
              "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    v2 = boto3.client("s3", **common)
    v4 = boto3.client("s3", config=Config(signature_version="s3v4"), **common)
    v2.create_bucket(Bucket=BUCKET)
    try:
        yield v2, v4
    finally:
        server.stop()


def _presigned(client, key: str) -> str:
    return client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key},
                                         ExpiresIn=900)


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home), **extra}


def _get(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dltui", "get", *args], env=_env(home, **extra),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("signature", ["v2", "v4"])
def test_a_presigned_object_downloads(s3, tmp_path, signature) -> None:
    v2, v4 = s3
    data = blob(3 * MiB, seed=600)
    v2.put_object(Bucket=BUCKET, Key=f"p-{signature}.bin", Body=data)
    url = _presigned(v2 if signature == "v2" else v4, f"p-{signature}.bin")
    proc = _get(tmp_path / "home", url, "-d", str(tmp_path / "dl"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "dl" / f"p-{signature}.bin").read_bytes() == data


def test_checksum_mode_is_asked_for_with_a_header(s3, tmp_path) -> None:
    v2, _ = s3
    data = blob(MiB, seed=601)
    v2.put_object(Bucket=BUCKET, Key="ck.bin", Body=data, ChecksumAlgorithm="SHA256")
    proc = _get(tmp_path / "home", _presigned(v2, "ck.bin"), "-d", str(tmp_path / "dl"),
                "-H", "x-amz-checksum-mode: ENABLED")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "dl" / "ck.bin").read_bytes() == data


@pytest.mark.parametrize("connections,size", [
    (4, 24 * MiB),
    pytest.param(8, 150 * MiB, marks=pytest.mark.slow),  # the scale it was seen at
])
def test_an_overwrite_mid_download_never_splices(s3, tmp_path, connections, size) -> None:
    v2, _ = s3
    old, new = blob(size, seed=602), blob(size, seed=603)
    v2.put_object(Bucket=BUCKET, Key="over.bin", Body=old)
    home, dest = tmp_path / "home", tmp_path / "dl"
    # Split at once, the segment GETs spaced half a second apart by the host's request rate
    # (as an operator's DLTUI_HOST_REQUESTS_PER_SECOND would), 16 MiB/s in all.
    env = _env(home, DLTUI_CONNECTIONS_PER_FILE=str(connections), DLTUI_MIN_SEGMENT_SIZE="1M",
               DLTUI_SPLIT_BELOW_RATE="0", DLTUI_HOST_REQUESTS_PER_SECOND="2",
               DLTUI_MAX_BANDWIDTH="16M" if size < 100 * MiB else "64M", DLTUI_RETRIES="1")
    proc = subprocess.Popen([sys.executable, "-m", "dltui", "get", _presigned(v2, "over.bin"),
                             "-d", str(dest)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def started() -> bool:
        if not (home / "ledger.db").exists():
            return False
        with Ledger(home) as led:
            found = jobs.find(led, 1)
        return found is not None and found.bytes_committed > 0

    try:
        wait_for(started, "the download did not start", timeout=30, step=0.01)
        v2.put_object(Bucket=BUCKET, Key="over.bin", Body=new)  # overwritten mid-download
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    got = (dest / "over.bin").read_bytes()
    assert sha(got) == sha(new), "the file is a splice of two versions, or the old one"
    with Ledger(home) as led:
        job = jobs.get(led, 1)
        changes = [e.data["reason"] for e in events.for_job(led, 1, 500)
                   if e.kind == "content_changed"]
    assert job.state is JobState.FINALIZED and job.failed_tries == 0
    assert changes and set(changes) <= {"etag_changed", "overlap_mismatch"}
