"""Side-by-side download benchmark: dltui against curl and aria2c, on loopback and on a WAN.

`make bench` runs it. It installs nginx, curl and aria2 when they are missing (Debian, as root),
creates the data once under bench/data, starts nginx on 127.0.0.1 with its own config and pid
file, and the project's origin (``bench/wan_origin.py``) with 40 ms per request and 8 MiB/s per
connection for the WAN cases. It then runs every tool on every case, interleaved and repeated,
verifies every output by SHA-256, and prints one table (also written to bench/results/) with
the ratio of dltui to each peer. dltui runs as a user types it (`add`, then `run --until-idle`
with no options); the best tuned settings are shown beside, never instead. Ratios within one
run are what count: this VM's absolute speed drifts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results"
MiB = 1 << 20
DLTUI = [sys.executable, "-m", "dltui"]


# -- tools and data ------------------------------------------------------------------------------
def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("nginx", "nginx-light"), ("curl", "curl"),
                                     ("aria2c", "aria2")) if shutil.which(tool) is None
               and not Path(f"/usr/sbin/{tool}").exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"bench: missing {', '.join(missing)}; install them (apt-get install "
                 f"{' '.join(missing)}) and rerun")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def _write_random(path: Path, size: int, seed: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    rng = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        left = size
        while left:
            n = min(left, 16 * MiB)
            fh.write(rng.randbytes(n))
            left -= n
    tmp.replace(path)


def make_data(small_count: int, tiny_count: int) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    _write_random(DATA / "1g.bin", 1024 * MiB, 1)
    _write_random(DATA / "100m.bin", 100 * MiB, 2)
    _write_random(DATA / "256m.bin", 256 * MiB, 5)
    for folder, count, size, seed in (("small", small_count, 64 << 10, 3),
                                      ("tiny", tiny_count, 4 << 10, 4)):
        d = DATA / folder
        d.mkdir(exist_ok=True)
        if len(list(d.iterdir())) != count:
            rng = random.Random(seed)
            for i in range(count):
                (d / f"f{i:05d}.bin").write_bytes(rng.randbytes(size))


def sha_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


# -- nginx ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nginx:
    def __init__(self, workdir: Path, *, log: bool = False) -> None:
        self.dir = workdir / ("nginx-log" if log else "nginx")
        self.dir.mkdir()
        # Logged only to count requests (a run of its own): timing runs log nothing.
        self.log = self.dir / "access.log" if log else None
        access = f'access_log {self.log} counted;' if log else "access_log off;"
        self.port = free_port()
        conf = self.dir / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format counted '$request_method $status';
    {access}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    server {{
        listen 127.0.0.1:{self.port};
        root {DATA};
    }}
}}
""")
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(self.dir)])
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start; see " + str(self.dir / "error.log"))

    def url(self, rel: str) -> str:
        return f"http://127.0.0.1:{self.port}/{rel}"

    def requests(self) -> list[tuple[str, int]]:
        """(method, status) of every request logged so far (a logging instance only)."""
        assert self.log is not None
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            method, _, status = line.partition(" ")
            out.append((method, int(status)))
        return out

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        self.proc.wait(timeout=10)


# -- cases and tools -----------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    files: list[str]  # paths relative to DATA
    unit: str  # "MB/s" or "files/s"
    segmented: bool = False
    #: Served by the project's origin with this latency per request and rate per connection
    #: (a distant, throttling server), not by the loopback nginx.
    wan: bool = False

    @property
    def total_bytes(self) -> int:
        return sum((DATA / f).stat().st_size for f in self.files)


@dataclass
class Sample:
    seconds: float
    rss_mb: float = 0.0
    cpu_s: float = 0.0


@dataclass
class Result:
    samples: dict[str, list[Sample]] = field(default_factory=dict)


def run_timed(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
              ) -> Sample:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}… exited {proc.returncode}: {err[-500:]}")
    return Sample(elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


WAN_LATENCY = 0.040
WAN_RATE = 8 * MiB


class WanOrigin:
    """The project's origin (in a process of its own, ``bench/wan_origin.py``) serving the WAN
    cases' files, each request delayed by ``WAN_LATENCY``, each connection held to
    ``WAN_RATE``."""

    def __init__(self, files: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "wan_origin.py"), str(WAN_LATENCY),
             str(WAN_RATE), *files], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def url(self, rel: str) -> str:
        return f"http://127.0.0.1:{self.port}/{rel}"

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def tool_commands(tool: str, case: Case, server: Nginx | WanOrigin, out: Path, work: Path
                  ) -> tuple[list[list[str]], dict[str, str] | None, list[str]]:
    """(setup commands, env, the timed command) for one tool on one case."""
    urls = [server.url(f) for f in case.files]
    listing = work / "urls.txt"
    if tool == "curl":
        if len(urls) == 1:
            return [], None, ["curl", "-sS", "--fail", "-o", str(out / Path(case.files[0]).name),
                              urls[0]]
        cfg = work / "curl.cfg"
        cfg.write_text("".join(f'url = "{u}"\noutput = "{out / Path(u).name}"\n' for u in urls))
        return [], None, ["curl", "-sS", "--fail", "-Z", "--parallel-max", "16", "-K", str(cfg)]
    if tool.startswith("aria2c"):
        listing.write_text("\n".join(urls) + "\n")
        conns = "8" if tool == "aria2c-x8" else "1"
        return [], None, ["aria2c", "-q", "-d", str(out), "-i", str(listing), "-j", "16",
                          "-x", conns, "-s", conns, "--file-allocation=falloc",
                          "--allow-overwrite=true", "--auto-file-renaming=false"]
    if tool == "dltui":  # as a user types it: no options, default settings
        listing.write_text("\n".join(urls) + "\n")
        env = {**os.environ, "DLTUI_HOME": str(work / "home"), "DLTUI_TRUST_ENV": "0"}
        return ([[*DLTUI, "add", "-q", "-i", str(listing), "--dir", str(out)]], env,
                [*DLTUI, "run", "--until-idle"])
    if tool == "dltui-tuned":
        listing.write_text("\n".join(urls) + "\n")
        # The best settings measured for each kind of case, shown beside the defaults.
        env = {**os.environ, "DLTUI_HOME": str(work / "home"), "DLTUI_TRUST_ENV": "0",
               "DLTUI_CONNECTIONS_PER_FILE": "8" if case.segmented else "1",
               "DLTUI_SPLIT_BELOW_RATE": "0"}  # split at once, as aria2c does
        setup = [[*DLTUI, "add", "-q", "-i", str(listing), "--dir", str(out)]]
        run = [*DLTUI, "run", "--until-idle", "--workers", "1"]
        if len(urls) > 1:  # many files: two processes use both cores past the GIL
            run = [*DLTUI, "run", "--until-idle", "--workers", "4" if case.wan else "2",
                   "--processes", "2"]
        return setup, env, run
    raise ValueError(tool)


def verify(case: Case, out: Path, expected: dict[str, str]) -> None:
    for rel in case.files:
        got = out / Path(rel).name
        if not got.is_file():
            raise RuntimeError(f"{got} is missing")
        if sha_of(got) != expected[rel]:
            raise RuntimeError(f"{got} has the wrong SHA-256")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cases", default="1g,1g-seg,100m,small,tiny,wan-256m,wan-small")
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--tiny", type=int, default=20000)
    parser.add_argument("--requests", action="store_true",
                        help="also count each tool's requests per download (nginx's access "
                             "log, one run of its own, so the timing runs log nothing)")
    args = parser.parse_args()
    ensure_tools()
    make_data(args.small, args.tiny)
    small = sorted(f"small/{p.name}" for p in (DATA / "small").iterdir())
    tiny = sorted(f"tiny/{p.name}" for p in (DATA / "tiny").iterdir())
    all_cases = {
        "1g": Case("1 GiB, one connection", ["1g.bin"], "MB/s"),
        "1g-seg": Case("1 GiB, segmented", ["1g.bin"], "MB/s", segmented=True),
        "100m": Case("100 MiB, one connection", ["100m.bin"], "MB/s"),
        "small": Case(f"{len(small):,} x 64 KiB", small, "files/s"),
        "tiny": Case(f"{len(tiny):,} x 4 KiB", tiny, "files/s"),
        "wan-256m": Case("WAN: 256 MiB, 8 MiB/s per connection, 40 ms", ["256m.bin"], "MB/s",
                         segmented=True, wan=True),
        "wan-small": Case("WAN: 500 x 64 KiB, 40 ms", small[:500], "files/s", wan=True),
    }
    cases = [all_cases[c] for c in args.cases.split(",")]
    expected = {f: sha_of(DATA / f) for c in cases for f in c.files}
    tools_for = {
        False: ["curl", "aria2c-x1", "dltui", "dltui-tuned"],
        True: ["aria2c-x8", "dltui", "dltui-tuned"],
    }
    results: dict[str, Result] = {c.name: Result() for c in cases}
    with tempfile.TemporaryDirectory(prefix="dltui-bench-") as tmp:
        nginx = Nginx(Path(tmp))
        wan = WanOrigin(sorted({f for c in cases if c.wan for f in c.files}))
        try:
            for run in range(args.runs + 1):  # run 0 warms caches and is discarded
                for case in cases:
                    tools = tools_for[case.segmented]
                    server = wan if case.wan else nginx
                    for tool in (tools if run % 2 == 0 else list(reversed(tools))):
                        work = Path(tmp) / f"{tool}-{run}"
                        out = work / "out"
                        out.mkdir(parents=True)
                        setup, env, cmd = tool_commands(tool, case, server, out, work)
                        for step in setup:
                            subprocess.run(step, env=env, check=True,
                                           stdout=subprocess.DEVNULL)
                        sample = run_timed(cmd, env=env)
                        verify(case, out, expected)
                        shutil.rmtree(work)
                        if run:
                            results[case.name].samples.setdefault(tool, []).append(sample)
                        print(f"run {run} {case.name:<24} {tool:<10} {sample.seconds:7.2f} s",
                              file=sys.stderr)
        finally:
            nginx.stop()
            wan.stop()
        counted = count_requests([c for c in cases if not c.wan], tools_for, expected,
                                 Path(tmp)) if args.requests else []
    print_table(cases, results, args.runs, counted)


def count_requests(cases: list[Case], tools_for: dict[bool, list[str]],
                   expected: dict[str, str], tmp: Path) -> list[str]:
    """Lines of a table: each tool's requests per download, as nginx logged them."""
    nginx = Nginx(tmp, log=True)
    lines = ["", "Requests per download, as nginx logged them (one run of each tool):", "",
             "| case | tool | requests | per file | GET | HEAD | answered 4xx/5xx |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    try:
        for case in cases:
            for tool in [t for t in tools_for[case.segmented] if t != "dltui-tuned"]:
                work = tmp / f"count-{tool}-{len(lines)}"
                out = work / "out"
                out.mkdir(parents=True)
                setup, env, cmd = tool_commands(tool, case, nginx, out, work)
                for step in setup:
                    subprocess.run(step, env=env, check=True, stdout=subprocess.DEVNULL)
                before = len(nginx.requests())
                run_timed(cmd, env=env)
                verify(case, out, expected)
                shutil.rmtree(work)
                seen = nginx.requests()[before:]
                gets = sum(m == "GET" for m, _ in seen)
                heads = sum(m == "HEAD" for m, _ in seen)
                bad = sum(code >= 400 for _, code in seen)
                lines.append(f"| {case.name} | {tool} | {len(seen):,} | "
                             f"{len(seen) / len(case.files):.2f} | {gets:,} | {heads:,} | "
                             f"{bad:,} |")
    finally:
        nginx.stop()
    return lines


def rate(case: Case, seconds: float) -> float:
    return (case.total_bytes / 1e6 if case.unit == "MB/s" else len(case.files)) / seconds


def print_table(cases: list[Case], results: dict[str, Result], runs: int,
                extra: list[str] | None = None) -> None:
    lines = [
        f"Runs: {runs} (after one warm-up), interleaved; medians, spread as min-max. "
        f"Host: {os.cpu_count()} cores, Python {sys.version.split()[0]}.",
        "",
        "| case | tool | median | spread | dltui (defaults) ratio | dltui peak RSS | dltui CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in cases:
        res = results[case.name].samples
        med = {t: statistics.median(rate(case, s.seconds) for s in v) for t, v in res.items()}
        mine = med.get("dltui")
        d = res.get("dltui", [])
        rss = f"{max(s.rss_mb for s in d):.0f} MB" if d else "-"
        cpu = f"{statistics.median(s.cpu_s for s in d):.2f} s" if d else "-"
        for tool, samples in res.items():
            rates = [rate(case, s.seconds) for s in samples]
            ratio = "" if tool == "dltui" or not mine else f"{mine / med[tool]:.2f}x"
            label = tool
            if tool == "dltui":
                label = "dltui (defaults)"
            elif tool == "dltui-tuned":
                label = "dltui tuned (8 connections at once)" if case.segmented else \
                    "dltui tuned (1 connection)"
                if len(case.files) > 1:
                    label = "dltui tuned -p 2 -w 4" if case.wan else "dltui tuned -p 2 -w 2"
            elif len(case.files) > 1:  # the same commands run 16 downloads at once
                label = {"aria2c-x1": "aria2c -j16", "curl": "curl -Z (16 parallel)"}[tool]
            elif tool == "aria2c-x8":
                label = "aria2c -x8 -s8"
            lines.append(
                f"| {case.name} | {label} | {med[tool]:,.0f} {case.unit} | "
                f"{min(rates):,.0f}-{max(rates):,.0f} | {ratio} | "
                f"{rss if tool == 'dltui' else ''} | {cpu if tool == 'dltui' else ''} |")
    text = "\n".join([*lines, *(extra or [])])
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d-%H%M")
    (RESULTS / f"{stamp}.md").write_text(text + "\n")
    (RESULTS / "latest.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
