"""No hangs: a header block trickled one byte at a time meets a deadline of its own, and
Ctrl-C stops `get` and `run` within 2 s wherever a request waits (connect, TLS, headers, body),
with the production timeouts (30 s reads), not the tests' short ones."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dltui.ledger import Ledger, jobs
from dltui.model import JobState
from dltui.origin import Resource
from dltui.worker import WorkerPool
from tests.conftest import TEST_ENV, wait_for
from tests.engine.helpers import blob, fetch_one

TLS = Path(__file__).resolve().parents[1] / "data" / "tls"


def test_a_trickled_header_block_meets_its_deadline(ledger, dest, origin, settings) -> None:
    """`X-Slow: ` then one byte every 0.3 s: every read is well under the read timeout, so
    only the header deadline ends each try."""
    url = origin.add("/slow-headers", Resource(data=blob(100), trickle_headers=0.3))
    [added] = jobs.add(ledger, [jobs.JobSpec(url, dest)])
    pool = WorkerPool(ledger, settings.replace(header_timeout=1.0, read_timeout=2.0, retries=2),
                      workers=1)
    began = time.monotonic()
    pool.start()
    try:
        wait_for(lambda: jobs.get(ledger, added.job.id).state is JobState.FAILED, timeout=20)
    finally:
        pool.stop()
    job = jobs.get(ledger, added.job.id)
    assert job.failed_tries == 2
    assert job.error == ("response headers from 127.0.0.1 not complete after 1s (the server "
                         "trickles them; setting header_timeout) (after 2 tries)"), job.error
    assert time.monotonic() - began < 15  # two deadlines and a backoff, not the trickle's 300 s


@pytest.mark.parametrize("connections", [1, 4])
def test_a_pause_shorter_than_the_read_timeout_is_no_failure(ledger, dest, origin, settings,
                                                             connections) -> None:
    """Socket waits are cut into short slices; the read timeout still counts whole seconds
    without a byte: a 1 s pause in a large body (read straight from the socket) under a 2 s
    read timeout is no failed try, on one connection or several."""
    data = blob(12 << 20, seed=91)
    url = origin.add("/pause.bin", Resource(data=data, stall_after=6 << 20, stall_seconds=1.0,
                                            stall_times=8))
    job = fetch_one(ledger, dest, settings.replace(read_timeout=2.0, min_speed=0,
                                                   connections_per_file=connections,
                                                   min_segment_size=2 << 20), url)
    assert job.state is JobState.FINALIZED and job.failed_tries == 0, job.error
    assert Path(job.final_path).read_bytes() == data


class _Silent:
    """A TCP server on 127.0.0.1 that accepts and then says nothing: a TLS handshake to it
    waits for the server's hello for ever."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


class _Full:
    """A listening socket whose accept queue is full and never drained: a connect to it waits
    in SYN-SENT until its timeout, as to a host behind a firewall that drops packets."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(4):  # the queue holds backlog + 1; the rest wait in SYN-SENT
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(s)
        time.sleep(0.2)

    def close(self) -> None:
        for s in [self.sock, *self.fillers]:
            s.close()


@pytest.fixture
def where(request, origin) -> Iterator[tuple[str, object]]:
    """A URL whose request waits at one phase, and how to tell it got there."""
    phase = request.param
    if phase == "connect":
        full = _Full()
        probe = socket.socket()
        probe.settimeout(1.0)
        try:
            probe.connect(("127.0.0.1", full.port))
            pytest.skip("this kernel accepts past a full backlog; no way to hold a connect")
        except (TimeoutError, OSError):
            pass
        finally:
            probe.close()
        yield f"http://127.0.0.1:{full.port}/x.bin", lambda: True
        full.close()
    elif phase == "tls":
        silent = _Silent()
        yield f"https://127.0.0.1:{silent.port}/x.bin", lambda: silent.accepted
        silent.close()
    elif phase == "headers":
        url = origin.add("/h.bin", Resource(data=blob(100), trickle_headers=0.5))
        yield url, lambda: origin.requests("/h.bin")
    else:
        url = origin.add("/b.bin", Resource(data=blob(1 << 20), stall_after=300_000,
                                            stall_seconds=120))
        yield url, lambda: origin.requests("/b.bin", "GET")


# Production timeouts: with the tests' 2 s ones a hang would end by itself in time.
SLOW = {"DLTUI_READ_TIMEOUT": "30", "DLTUI_CONNECT_TIMEOUT": "30", "DLTUI_HEADER_TIMEOUT": "30",
        "DLTUI_MIN_SPEED": "0", "SSL_CERT_FILE": str(TLS / "cert.pem"),
        "DLTUI_FLAG_BATCH": "0"}


@pytest.mark.parametrize("where", ["connect", "tls", "headers", "body"], indirect=True)
@pytest.mark.parametrize("command", ["get", "run"])
def test_ctrl_c_stops_within_two_seconds(tmp_path, where, command) -> None:
    url, arrived = where
    home, dest = tmp_path / "home", tmp_path / "dl"
    env = {**os.environ, **TEST_ENV, **SLOW, "DLTUI_HOME": str(home)}
    if command == "get":
        argv = ["get", url, "-d", str(dest)]
    else:
        subprocess.run([sys.executable, "-m", "dltui", "add", "-q", url, "-d", str(dest)],
                       env=env, check=True)
        argv = ["run"]
    proc = subprocess.Popen([sys.executable, "-m", "dltui", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(arrived, "the request never reached the phase", timeout=20)
        time.sleep(0.8)  # well inside the wait
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{command} still running 10 s after Ctrl-C")
        took = time.monotonic() - sent
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert "Traceback" not in err, err
    assert took < 2.0, (took, err)
    with Ledger(home) as led:
        [job] = jobs.list_jobs(led)
    assert job.state is JobState.PLANNED, (job.state, job.error)  # back in the queue
    assert job.failed_tries == 0  # a stop is no failure
