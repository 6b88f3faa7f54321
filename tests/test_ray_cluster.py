"""Ray clusters as they are run: started with ``ray start``, joined with ``--ray-address``, token authentication,
and a worker node that does not see the driver's files.

Each test starts its nodes with their own ``--temp-dir`` and HOME, and stops every process it started: those
whose command line names that temp dir, and their descendants (the workers), by pid. Not ``ray stop``,
which would stop any other Ray on the machine too.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="the [ray] extra is part of [test]; this only skips outside it")
pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), zombies left out (they hold nothing and cannot be killed)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if state != "Z":
                found[int(entry.name)] = (int(ppid), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ValueError):
            continue
    return found


def _ours(temp_dirs: list[str]) -> set[int]:
    """The processes of the nodes started with these temp dirs, and everything they started."""
    table = _processes()
    pids = {pid for pid, (_, cmd) in table.items() if any(t in cmd for t in temp_dirs)}
    grown = True
    while grown:
        children = {pid for pid, (ppid, _) in table.items() if ppid in pids} - pids
        pids |= children
        grown = bool(children)
    return pids


class Cluster:
    """Ray nodes started by ``ray start`` on this machine; ``stop`` kills exactly them."""

    def __init__(self, root: Path):
        self.root, self.temp_dirs, self.port = root, [], _free_port()
        self.address = f"127.0.0.1:{self.port}"

    def env(self, home: Path, **extra) -> dict:
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        return {**env, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", **extra}

    def start(self, args: list[str], env: dict, hide: Path | None = None) -> None:
        """``ray start ARGS``; with ``hide``, in a mount namespace of its own where that folder is an empty read-only tmpfs."""
        temp = tempfile.mkdtemp(prefix="prt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.temp_dirs.append(temp)
        common = ["--temp-dir", temp, "--object-store-memory", str(100 * 1024 * 1024), "--dashboard-agent-listen-port", str(_free_port()),
                  "--disable-usage-stats"]
        cmd = [RAY, "start", *args, *common]
        if hide is not None:
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                   f"mount -t tmpfs -o ro,size=1m none {shlex.quote(str(hide))} && exec {shlex.join(cmd)}"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]

    def head(self, env: dict, cpus: int) -> None:
        self.start(["--head", "--port", str(self.port), "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
                    "--include-dashboard", "false"], env)

    def stop(self) -> None:
        for _ in range(20):
            pids = _ours(self.temp_dirs)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        raise AssertionError(f"Ray processes still running: {sorted(_ours(self.temp_dirs))}")


@pytest.fixture()
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()
        assert not _ours(c.temp_dirs)
        for t in c.temp_dirs:
            shutil.rmtree(t, ignore_errors=True)


def _parity(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parity", "run", *args], env=env, capture_output=True, text=True, timeout=900,
                          cwd=Path(__file__).resolve().parents[1])


def test_a_two_node_cluster_whose_worker_cannot_see_the_files_equals_the_local_engine(cluster, demo_artifacts, clean_run, parity_cache, tmp_path):
    """A head that takes no work (``--num-cpus 0``) and a worker node with 2 CPUs; the demo's gate joins with
    ``--ray-address``, with its models and clips in ``data/``.

    The worker node cannot read ``data/``: it is started inside its own mount namespace (``unshare -m``) where
    an empty read-only tmpfs is mounted over that folder, so every process of that node (raylet, decode tasks,
    backend actors, and any C++ code in them: FFmpeg, ONNX Runtime, Paddle) sees an empty folder at that path.
    Its HOME and artifact cache are its own too. The head can read ``data/`` but runs nothing (no CPUs; actors are
    pinned to nodes that offer CPUs). So the run can only work if the model files and clips reach the worker as
    bytes through the object store; the results must then equal the local engine's, bitwise.
    """
    from parity import demo

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare -m (root or user namespaces) to hide the folder from the worker node")
    data = tmp_path / "data"
    paths = demo.publish(demo_artifacts, data)
    env = cluster.env(tmp_path / "head-home", RAY_AUTH_MODE="disabled")
    cluster.head(env, cpus=0)
    worker_env = cluster.env(tmp_path / "worker-home", RAY_AUTH_MODE="disabled", PARITY_CACHE_DIR=str(tmp_path / "worker-cache"))
    cluster.start(["--address", cluster.address, "--node-ip-address", "127.0.0.2", "--num-cpus", "2"], worker_env,
                  hide=data)
    hidden = subprocess.run(["nsenter", "-t", str(min(_ours(cluster.temp_dirs[1:]))), "-m", "ls", "-A", str(data)], capture_output=True, text=True)
    assert hidden.returncode == 0 and hidden.stdout == "", "the worker node must see an empty data folder"

    report = tmp_path / "report"
    driver_env = cluster.env(tmp_path / "driver-home", PARITY_CACHE_DIR=str(parity_cache.root))
    # onnxruntime-int8 calibrated on clips only the driver can read (the judged ones: the overlap is noted, not an error)
    done = _parity(["--paddle-model", str(paths["paddle_model"]), "--onnx", str(paths["onnx"]), "--clips", str(paths["clips"]),
                    "--backends", "paddle,onnxruntime,onnxruntime-fp16,onnxruntime-int8", "--calibration", str(paths["clips"]),
                    "--engine", "ray", "--ray-address", cluster.address, "--report", str(report)], driver_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ray: the run used 1 of 2 nodes (2 CPUs, 0 GPUs)" in done.stderr
    run = json.loads((report / "results.json").read_text())["run"]
    assert run["cluster"] | {"address": None} == {
        "address": None, "ray_version": __import__("ray").__version__, "auth": "disabled", "files": "object store",
        "nodes": 2, "cpus": 2, "gpus": 0, "used": {"nodes": 1, "cpus": 2, "gpus": 0}}
    assert run["decode"]["clips"] == len(clean_run.clips) and run["decode"]["errors"] == 0
    # Same runners, same thread count, same tensors at batch 1: Ray moves bytes, it does not compute on them.
    logits = np.load(report / "logits.npz")
    for name in ("paddle", "onnxruntime", "onnxruntime-fp16"):
        assert (logits[name] == clean_run.logits[name]).all(), name
    int8 = next(b for b in json.loads((report / "results.json").read_text())["backends"] if b["name"] == "onnxruntime-int8")
    assert int8["status"] == "ok" and len(logits["onnxruntime-int8"]) == len(clean_run.clips), int8
    # The model files reached the worker's own cache, by hash: the INT8 model among them, built on the driver.
    assert sorted(p.name for p in (tmp_path / "worker-cache" / "ray-files").glob("*/*")) == sorted(
        [paths["paddle_model"].name, paths["paddle_model"].with_suffix(".pdiparams").name, paths["onnx"].name, "model.int8.onnx"])


def _small_list(demo_artifacts, tmp_path: Path, count: int = 3) -> Path:
    src = demo_artifacts.val_list
    lines = [f"{(src.parent / ln.split()[0]).resolve()} {ln.split()[1]}" for ln in src.read_text().splitlines() if ln.strip()][:count]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(lines) + "\n")
    shutil.copy(src.parent / "labels.txt", tmp_path / "labels.txt")
    return listing


def test_a_token_cluster_is_joined_with_the_token_file_and_refused_in_one_line_without_it(cluster, demo_artifacts, parity_cache, tmp_path):
    """``ray start --head`` with ``RAY_AUTH_MODE=token``; the driver has no RAY_AUTH_* variable at all. With the token in
    its ~/.ray/auth_token (Ray's default place) the run joins and passes; without it, one line says why and where
    Ray looks for a token, and nothing else reaches the terminal (no InvalidAuthToken log lines, no traceback); a wrong
    token is refused in one line too."""
    token = "0123456789abcdef0123456789abcdef"
    env = cluster.env(tmp_path / "head-home", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    cluster.head(env, cpus=1)
    args = ["--onnx", str(demo_artifacts.onnx), "--clips", str(_small_list(demo_artifacts, tmp_path)), "--backends", "onnxruntime,onnxruntime-fp16",
            "--reference", "onnxruntime", "--engine", "ray", "--ray-address", cluster.address]

    with_token = tmp_path / "with-token"
    (with_token / ".ray").mkdir(parents=True)
    (with_token / ".ray" / "auth_token").write_text(token)
    done = _parity([*args, "--report", str(tmp_path / "r1")], cluster.env(with_token, PARITY_CACHE_DIR=str(parity_cache.root)))
    assert done.returncode == 0, done.stderr[-3000:]
    cluster_facts = json.loads((tmp_path / "r1" / "results.json").read_text())["run"]["cluster"]
    assert cluster_facts["auth"] == "token" and cluster_facts["nodes"] == 1

    start = time.monotonic()
    done = _parity([*args, "--report", str(tmp_path / "r2")], cluster.env(tmp_path / "no-token", PARITY_CACHE_DIR=str(parity_cache.root)))
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr
    assert f"the Ray cluster {cluster.address} uses token authentication and this machine has no token" in lines[0]
    assert "$RAY_AUTH_TOKEN" in lines[0] and "$RAY_AUTH_TOKEN_PATH" in lines[0] and "~/.ray/auth_token" in lines[0]
    assert time.monotonic() - start < 60  # not Ray's ten retries

    done = _parity([*args, "--report", str(tmp_path / "r3")], cluster.env(tmp_path / "no-token", RAY_AUTH_TOKEN="not-the-token"))
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert f"the Ray cluster {cluster.address} refuses the token from $RAY_AUTH_TOKEN: give the cluster's own" in done.stderr


def test_the_tensor_cache_stays_on_the_driver(cluster, demo_artifacts, parity_cache, tmp_path):
    """Clips go to the cluster as bytes and tensors come back; the driver keeps them in its --tensor-cache, so a rerun
    sends no clip to the cluster and decodes nothing, with the same logits."""
    cluster.head(cluster.env(tmp_path / "head-home", RAY_AUTH_MODE="disabled"), cpus=1)
    args = ["--onnx", str(demo_artifacts.onnx), "--clips", str(_small_list(demo_artifacts, tmp_path)), "--backends",
            "onnxruntime,onnxruntime-fp16", "--reference", "onnxruntime", "--engine", "ray", "--ray-address", cluster.address,
            "--tensor-cache", str(tmp_path / "tensors")]
    env = cluster.env(tmp_path / "driver-home", PARITY_CACHE_DIR=str(parity_cache.root))
    runs = []
    for name in ("first", "rerun"):
        done = _parity([*args, "--report", str(tmp_path / name)], env)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append((json.loads((tmp_path / name / "results.json").read_text())["run"]["decode"], np.load(tmp_path / name / "logits.npz")))
    (first, first_logits), (rerun, rerun_logits) = runs
    assert (first["decoded"], first["cache_hits"]) == (3, 0) and (rerun["decoded"], rerun["cache_hits"]) == (0, 3)
    assert len(list((tmp_path / "tensors").rglob("*.npz"))) == 3
    assert all((first_logits[k] == rerun_logits[k]).all() for k in ("onnxruntime", "onnxruntime-fp16"))
