"""The local service stack behind `hypernet stack up|down|status`: SeaweedFS S3, a Prefect server with
one process worker, and an MLflow tracking server whose artifacts go to the S3 bucket.

    state, started = up(Path(".hypernet"))   # every service healthy, or StackError (nothing left running)
    stack_env(Path(".hypernet"))             # the environment that points the pipeline at the stack
    down(Path(".hypernet"))                  # stops everything by PID, keeps the data

Every service runs detached (its own session and process group, output to a log file) so it outlives
the command that started it; `down` finds it again through `<workspace>/stack/state.json`. Ports are
picked free at start (never fixed defaults) so several stacks and test runs can share a machine.
All state lives under `<workspace>/stack/`: logs, state.json, env.sh, the SeaweedFS data, the MLflow
SQLite database and PREFECT_HOME. Only the standard library (and infra.seaweedfs) is imported at
module level: `stack_env` runs on every `hypernet` command.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Callable

from infra.seaweedfs import COMPONENTS, GRPC_OFFSET, SeaweedFS, find_weed, free_port_pairs

STACK_DIR_NAME = "stack"  # <workspace>/stack, as flows.settings.Settings.stack_dir
PROJECT_DIR = Path(__file__).resolve().parent.parent  # holds prefect.yaml: the worker's cwd
GPU_TEMPLATE = Path(__file__).resolve().parent / "k8s" / "gpu-base-job-template.json"
WORKER_NAME = "hypernet-stack-worker"
START_ORDER = ("seaweedfs", "prefect", "mlflow", "worker")
STOP_ORDER = ("worker", "mlflow", "prefect", "seaweedfs")  # clients before the services they use
REGION = "us-east-1"
TELEMETRY_OFF = {
    "DATAHUB_TELEMETRY_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}
GPU_POOL_NEEDS = "needs `pip install prefect-kubernetes` and a Kubernetes cluster with GPU nodes"

# Health checks bypass any HTTP proxy from the environment: every service is on this machine.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Popen objects of the services this process started, so that it can reap them (tests run up and
# down in one process; without a wait() a stopped child would linger as a zombie).
_LAUNCHED: dict[int, subprocess.Popen] = {}


class StackError(RuntimeError):
    """A service could not be started, reached or stopped."""


@dataclass
class Service:
    name: str
    pid: int
    url: str | None  # None for the worker, which serves nothing
    log: str
    ports: list[int]
    start_time: str | None = None  # from /proc, to recognise the process again (PIDs get reused)


@dataclass
class StackState:
    workspace: str
    services: dict[str, Service]
    env: dict[str, str]  # the "stack env": what a client of the stack needs
    cpu_pool: str
    gpu_pool: str
    gpu_pool_note: str
    weed_ports: dict[str, int] = field(default_factory=dict)
    weed_socket_dir: str | None = None
    ready: bool = False  # false while `up` is still waiting for health
    started_at: float = field(default_factory=time.time)

    @property
    def stack_dir(self) -> Path:
        return Path(self.workspace) / STACK_DIR_NAME


@dataclass
class ServiceStatus:
    name: str
    url: str | None
    pid: int | None
    log: str | None
    running: bool
    healthy: bool
    detail: str


# ---- where things live ----------------------------------------------------------------------------
def stack_dir(workspace: Path) -> Path:
    return Path(workspace).resolve() / STACK_DIR_NAME


def _state_path(workspace: Path) -> Path:
    return stack_dir(workspace) / "state.json"


def _write_private(path: Path, text: str) -> None:
    """Owner-only file: state.json and env.sh hold the generated S3 secret key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _save(state: StackState) -> None:
    _write_private(state.stack_dir / "state.json", json.dumps(asdict(state), indent=2))
    _write_private(state.stack_dir / "env.sh",
                   "".join(f"export {k}={shlex.quote(v)}\n" for k, v in state.env.items()))


def load_state(workspace: Path) -> StackState | None:
    """The recorded stack (running or not), or None when none is recorded."""
    try:
        raw = json.loads(_state_path(workspace).read_text())
    except (OSError, ValueError):
        return None
    raw["services"] = {k: Service(**v) for k, v in raw.get("services", {}).items()}
    return StackState(**raw)


def _credentials(directory: Path) -> tuple[str, str]:
    """S3 keys, generated once and kept with the data: weed keeps its identity across restarts,
    and clients holding an old env.sh keep working."""
    path = directory / "credentials.json"
    if path.exists():
        creds = json.loads(path.read_text())
    else:
        creds = {"access_key": "hn" + secrets.token_hex(8), "secret_key": secrets.token_hex(20)}
        _write_private(path, json.dumps(creds))
    return creds["access_key"], creds["secret_key"]


# ---- processes -------------------------------------------------------------------------------------
def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], pgrp [2], starttime [19])."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[19] if stat else None


def _reap(pid: int) -> None:
    proc = _LAUNCHED.get(pid)
    if proc is not None and proc.poll() is not None:
        _LAUNCHED.pop(pid, None)


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    if stat is None:  # no /proc (not Linux): kill(pid, 0) is all we know; else it just went away
        return not Path("/proc").is_dir()
    return stat[0] != "Z"


def _is_ours(svc: Service) -> bool:
    """The recorded PID is still the process we started (not a reused PID)."""
    if not pid_alive(svc.pid):
        return False
    return svc.start_time is None or _start_time(svc.pid) in (None, svc.start_time)


def _group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process left in the service's process group (children included)."""
    _reap(pgid)
    if not Path("/proc").is_dir():  # not Linux: ask the kernel (zombies count as alive there)
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat and stat[2] == str(pgid) and stat[0] != "Z":
                return True
    return False


def _launch(name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> Service:
    """Start a service detached: own session (so it outlives us and Ctrl-C in our terminal does not
    reach it), output to its log file. No parent-death signal here, unlike infra.seaweedfs."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _LAUNCHED[proc.pid] = proc
    return Service(name=name, pid=proc.pid, url=None, log=str(log), ports=[], start_time=_start_time(proc.pid))


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _stop_service(svc: Service, timeout: float) -> None:
    """Stop the service's whole process group: mlflow and prefect run their web servers in child
    processes, and the worker runs flows in children; none may survive the leader."""
    if pid_alive(svc.pid) and not _is_ours(svc):
        return  # the PID now belongs to someone else: the service died long ago
    if svc.name == "worker":
        # The first SIGINT makes a Prefect worker drain, the second makes it stop now.
        for _ in range(2):
            _signal_group(svc.pid, signal.SIGINT)
            time.sleep(0.3)
        if _wait_gone(svc.pid, timeout / 2):
            return
    _signal_group(svc.pid, signal.SIGTERM)
    if not _wait_gone(svc.pid, timeout):
        _signal_group(svc.pid, signal.SIGKILL)
        _wait_gone(svc.pid, 5)


# ---- HTTP and health -----------------------------------------------------------------------------
def _http(method: str, url: str, body: object | None = None, timeout: float = 3.0) -> tuple[int, bytes]:
    """(status, body) for any HTTP answer; OSError when nothing answers."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with _HTTP.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _check(svc: Service, state: StackState) -> tuple[bool, str]:
    """(healthy, detail) of one service; never raises."""
    try:
        if svc.name == "seaweedfs":
            code, _ = _http("GET", f"{svc.url}/")  # any answer will do: unsigned requests get 403
            return True, f"S3 answers (HTTP {code})"
        if svc.name == "prefect":
            code, _ = _http("GET", f"{svc.url}/api/health")
            return code == 200, f"/api/health HTTP {code}"
        if svc.name == "mlflow":
            code, _ = _http("GET", f"{svc.url}/health")
            return code == 200, f"/health HTTP {code}"
        return _worker_online(state)
    except (OSError, ValueError) as exc:  # nothing listening, or an answer that is not JSON
        return False, f"no answer ({exc.__class__.__name__})"


def _worker_online(state: StackState) -> tuple[bool, str]:
    """The worker has registered with the Prefect server and is heartbeating."""
    api = state.services["prefect"].url + "/api"
    code, body = _http("POST", f"{api}/work_pools/{state.cpu_pool}/workers/filter", {})
    if code != 200:
        return False, f"work pool {state.cpu_pool!r}: HTTP {code}"
    online = [w for w in json.loads(body) if w.get("name") == WORKER_NAME and w.get("status") == "ONLINE"]
    return bool(online), f"polling pool {state.cpu_pool!r}" if online else "not registered yet"


def _log_tail(path: str, n: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _wait_healthy(state: StackState, names: list[str], timeout: float) -> None:
    """Poll until every named service is healthy; fail fast when one exits."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        for name in list(pending):
            svc = state.services[name]
            if not pid_alive(svc.pid):
                raise StackError(f"{name} exited during startup; see {svc.log}:\n{_log_tail(svc.log)}")
            if _check(svc, state)[0]:
                pending.remove(name)
        if pending and time.monotonic() > deadline:
            name = pending[0]
            raise StackError(f"{name} not healthy after {timeout:.0f} s; see {state.services[name].log}:\n"
                             f"{_log_tail(state.services[name].log)}")
        if pending:
            time.sleep(0.25)


# ---- starting the services -------------------------------------------------------------------------
def _base_env() -> dict[str, str]:
    """Our environment without S3 credentials or a Prefect API of some other stack."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "S3_", "MLFLOW_S3_")) and k != "PREFECT_API_URL"}
    return env | TELEMETRY_OFF


def _free_ports(n: int, taken: set[int]) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port_pairs(1, offset=0)[0]
        if p not in taken and p not in ports:
            ports.append(p)
    return ports


def _start_seaweedfs(directory: Path, bucket: str, keys: tuple[str, str], state: StackState) -> None:
    """`weed mini` with infra.seaweedfs's arguments (explicit ports, state under `directory`) but
    detached: SeaweedFS.start() ties the server's life to its launcher, which is wrong here."""
    server = SeaweedFS(directory, bucket=bucket, access_key=keys[0], secret_key=keys[1])
    server.ports = dict(zip(COMPONENTS, free_port_pairs(len(COMPONENTS))))
    server.ports["metrics"] = _free_ports(1, set(server.ports.values()))[0]
    (directory / "data").mkdir(parents=True, exist_ok=True)
    env = _base_env() | {"AWS_ACCESS_KEY_ID": keys[0], "AWS_SECRET_ACCESS_KEY": keys[1],
                         "TMPDIR": str(server._sockets_dir())}  # weed puts its gRPC sockets in $TMPDIR
    argv = [str(find_weed()), "-logtostderr", "mini", *server._arguments()]
    svc = _launch("seaweedfs", argv, env, directory / "weed.log", directory)
    svc.url, svc.ports = server.endpoint_url, sorted(_weed_ports(server.ports))
    state.services["seaweedfs"] = svc
    state.weed_ports = server.ports
    state.weed_socket_dir = str(server._socket_dir) if server._socket_dir else None


def _weed_ports(ports: dict[str, int]) -> set[int]:
    return set(ports.values()) | {p + GRPC_OFFSET for name, p in ports.items() if name != "metrics"}


def _start_prefect(sdir: Path, host: str, port: int, state: StackState) -> None:
    home = sdir / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    env = _base_env() | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    svc = _launch("prefect", argv, env, sdir / "logs" / "prefect-server.log", sdir)
    svc.url, svc.ports = f"http://{host}:{port}", [port]
    state.services["prefect"] = svc


def _start_mlflow(sdir: Path, host: str, port: int, bucket: str, s3_env: dict[str, str], state: StackState) -> None:
    """One worker and no job runner: ≈0.5 GB and ready in seconds instead of ≈2.4 GB and 25 s.
    The server proxies artifacts (--serve-artifacts is the default) to S3, so clients need only
    the tracking URI; localhost is allowed by the default --allowed-hosts."""
    env = _base_env() | s3_env | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    argv = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{sdir / 'mlflow.db'}",
            "--artifacts-destination", f"s3://{bucket}/mlflow"]
    svc = _launch("mlflow", argv, env, sdir / "logs" / "mlflow.log", sdir)
    svc.url, svc.ports = f"http://{host}:{port}", [port]
    state.services["mlflow"] = svc


def _start_worker(sdir: Path, state: StackState) -> None:
    """A process worker whose flow runs inherit the stack env, so they use the stack's services."""
    env = _base_env() | state.env | {"PREFECT_HOME": str(sdir / "prefect"), "PREFECT_WORKER_QUERY_SECONDS": "2"}
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", state.cpu_pool, "--type", "process",
            "--name", WORKER_NAME, "--install-policy", "never"]
    state.services["worker"] = _launch("worker", argv, env, sdir / "logs" / "worker.log", PROJECT_DIR)


def _ensure_bucket(bucket: str, s3_env: dict[str, str]) -> None:
    """`weed mini -bucket=` creates it too; creating it here makes `up` independent of that flag."""
    import boto3
    from botocore.exceptions import ClientError

    s3 = boto3.client("s3", endpoint_url=s3_env["MLFLOW_S3_ENDPOINT_URL"], region_name=REGION,
                      aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"])
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def _create_pool(api: str, name: str, pool_type: str, template: dict) -> None:
    """Create a work pool through the REST API (a `prefect` CLI call costs ≈5 s of imports here);
    an existing pool is left as it is."""
    code, body = _http("POST", f"{api}/work_pools/", {"name": name, "type": pool_type, "base_job_template": template})
    if code not in (200, 201, 409):
        raise StackError(f"could not create work pool {name!r}: HTTP {code} {body[:300]!r}")


def kubernetes_worker_available() -> bool:
    """The `kubernetes` worker type comes with the prefect-kubernetes package, not with prefect."""
    return find_spec("prefect_kubernetes") is not None


def _create_gpu_pool(state: StackState) -> None:
    """The Kubernetes GPU pool, where its worker type exists; otherwise say what it needs."""
    if kubernetes_worker_available():
        api = state.services["prefect"].url + "/api"
        _create_pool(api, state.gpu_pool, "kubernetes", json.loads(GPU_TEMPLATE.read_text()))
        state.gpu_pool_note = f"created (kubernetes, base job template {GPU_TEMPLATE.name})"
    else:
        state.gpu_pool_note = f"not created: {GPU_POOL_NEEDS}"


def _client_env(workspace: Path, bucket: str, prefect_url: str, mlflow_url: str,
                s3_env: dict[str, str]) -> dict[str, str]:
    return {
        "PREFECT_API_URL": f"{prefect_url}/api",
        "HYPERNET_WORKSPACE": str(workspace),
        "HYPERNET_PROJECT_DIR": str(PROJECT_DIR),
        "HYPERNET_TRACKING__TRACKING_URI": mlflow_url,
        "HYPERNET_STORAGE__LAKE": f"s3://{bucket}/lake",
        "HYPERNET_STORAGE__S3_ENDPOINT_URL": s3_env["MLFLOW_S3_ENDPOINT_URL"],
        **s3_env,
        **TELEMETRY_OFF,
    }


def up(workspace: Path, *, host: str = "127.0.0.1", bucket: str = "hypernet", cpu_pool: str = "hypernet-cpu",
       gpu_pool: str = "hypernet-gpu", timeout: float = 120.0) -> tuple[StackState, bool]:
    """Start the stack and wait until every service is healthy. Returns (state, started): started is
    False when the stack was already up. On any failure everything started is stopped again."""
    workspace = Path(workspace).resolve()
    current = load_state(workspace)
    if current is not None and current.ready and all(_is_ours(s) for s in current.services.values()):
        return current, False
    if current is not None:
        down(workspace)  # leftovers of a crashed or half-started stack
    sdir = stack_dir(workspace)
    (sdir / "logs").mkdir(parents=True, exist_ok=True)
    keys = _credentials(sdir)
    state = StackState(workspace=str(workspace), services={}, env={}, cpu_pool=cpu_pool, gpu_pool=gpu_pool,
                       gpu_pool_note="")
    try:
        _start_all(state, sdir, host, bucket, keys, timeout)
    except BaseException:  # Ctrl-C included: leave nothing running
        _stop_all(state, timeout=10)
        _state_path(workspace).unlink(missing_ok=True)
        raise
    return state, True


def _start_all(state: StackState, sdir: Path, host: str, bucket: str, keys: tuple[str, str], timeout: float) -> None:
    _start_seaweedfs(sdir / "seaweedfs", bucket, keys, state)
    prefect_port, mlflow_port = _free_ports(2, set(state.services["seaweedfs"].ports))
    s3_env = {"AWS_ACCESS_KEY_ID": keys[0], "AWS_SECRET_ACCESS_KEY": keys[1], "AWS_DEFAULT_REGION": REGION,
              "MLFLOW_S3_ENDPOINT_URL": state.services["seaweedfs"].url,
              "AWS_ENDPOINT_URL_S3": state.services["seaweedfs"].url}
    # The servers start side by side and the worker as soon as Prefect answers: on two cores the
    # Python imports (≈7 s of CPU each for Prefect and MLflow) set the pace.
    _start_prefect(sdir, host, prefect_port, state)
    _start_mlflow(sdir, host, mlflow_port, bucket, s3_env, state)
    state.env = _client_env(Path(state.workspace), bucket, state.services["prefect"].url,
                            state.services["mlflow"].url, s3_env)
    _save(state)  # recorded before waiting, so `stack down` can clean up after a crash of this process
    _wait_healthy(state, ["seaweedfs", "prefect"], timeout)
    # The worker creates the process pool when it is missing, with the process worker's default base
    # job template (what `prefect work-pool create --type process` does) and keeps an existing one.
    _start_worker(sdir, state)
    _save(state)
    _create_gpu_pool(state)
    _ensure_bucket(bucket, s3_env)
    _wait_healthy(state, ["mlflow", "worker"], timeout)
    state.ready = True
    _save(state)


# ---- stopping and inspecting -----------------------------------------------------------------------
def _stop_all(state: StackState, timeout: float) -> list[str]:
    stopped = []
    for name in STOP_ORDER:
        if name in state.services:
            _stop_service(state.services[name], timeout)
            stopped.append(name)
    if state.weed_ports:
        # weed leaves a few gRPC sockets at fixed /tmp paths named by port; SeaweedFS knows them.
        leftover = SeaweedFS(state.stack_dir / "seaweedfs")
        leftover.ports = state.weed_ports
        leftover._remove_fixed_sockets()
    if state.weed_socket_dir:
        import shutil

        shutil.rmtree(state.weed_socket_dir, ignore_errors=True)
    return stopped


def _port_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def leftovers(state: StackState) -> list[str]:
    """What is still running or listening of a stack: empty once it is fully down."""
    # A group outlives its leader when a child survives; a live leader that is not ours is a reused PID.
    found = [f"{s.name} (pid {s.pid})" for s in state.services.values()
             if _group_alive(s.pid) and (_is_ours(s) or not pid_alive(s.pid))]
    ports = [p for s in state.services.values() for p in s.ports]
    return found + [f"port {p}" for p in ports if _port_listening(p)]


def down(workspace: Path, timeout: float = 20.0) -> list[str]:
    """Stop every recorded service (worker, MLflow, Prefect, SeaweedFS), check that no process or
    port is left, and forget the stack (data, logs and credentials stay). Returns the services
    that were recorded; [] when no stack was recorded."""
    state = load_state(workspace)
    if state is None:
        return []
    stopped = _stop_all(state, timeout)
    deadline = time.monotonic() + 5  # a closing listener can take a moment to go
    while (left := leftovers(state)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        raise StackError(f"still running after `stack down`: {', '.join(left)}")
    _state_path(workspace).unlink(missing_ok=True)
    (stack_dir(workspace) / "env.sh").unlink(missing_ok=True)
    return stopped


def status(workspace: Path) -> list[ServiceStatus]:
    """Every service's state and health; all stopped when no stack is recorded."""
    state = load_state(workspace)
    if state is None:
        return [ServiceStatus(n, None, None, None, False, False, "not started") for n in START_ORDER]
    result = []
    for name in START_ORDER:
        svc = state.services.get(name)
        if svc is None:
            result.append(ServiceStatus(name, None, None, None, False, False, "not started"))
            continue
        running = _is_ours(svc)
        healthy, detail = _check(svc, state) if running else (False, "stopped")
        result.append(ServiceStatus(name, svc.url, svc.pid, svc.log, running, healthy, detail))
    return result


def stack_env(workspace: Path) -> dict[str, str] | None:
    """The environment pointing the pipeline at the running stack, or None when the stack is not
    up (no state.json, still starting, or a recorded process gone). Cheap: no network calls."""
    state = load_state(workspace)
    if state is None or not state.ready or not all(_is_ours(s) for s in state.services.values()):
        return None
    return dict(state.env)


# ---- the MLflow UI without the stack -------------------------------------------------------------------
def serve_mlflow_ui(tracking_uri: str, host: str = "127.0.0.1", port: int | None = None,
                    on_ready: Callable[[str], None] | None = None, timeout: float = 120.0) -> int:
    """Run `mlflow ui` on a tracking store in the foreground until it exits or Ctrl-C; calls
    on_ready(url) once it answers. Returns the exit code (0 after Ctrl-C)."""
    port = port or _free_ports(1, set())[0]
    url = f"http://{host}:{port}"
    env = _base_env() | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    argv = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
            "--host", host, "--port", str(port), "--workers", "1"]
    # Same process group as us: Ctrl-C in the terminal reaches mlflow and its uvicorn child too.
    proc = subprocess.Popen(argv, env=env)
    try:
        if _wait_url(f"{url}/health", proc, timeout) and on_ready is not None:
            on_ready(url)
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()


def _wait_url(url: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if _http("GET", url, timeout=1)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.25)
    return False
