"""What it costs a Ray task to get one file: by its path (``--ray-shared-paths``) or as bytes through the object store (the default).

    python benchmarks/ray_transfer.py [--sizes 0.1,1,10,100] [--repeats 5] [--address HOST:PORT]

For each size (MB) it writes a file of random bytes and times, per file, end to end from the driver:

- ``path``: a task on a node opens the path and reads every byte (sha256), as a decode task reads its clip;
- ``bytes``: the driver reads the file, the bytes go through the object store as the task's argument, and
  the task writes them to a temp folder and reads them back (sha256), as ``_decode_task`` does;
- ``model``: an actor's ``transfer.receive`` of one model file, first time (bytes fetched, written, checked)
  and then with the file already in that node's cache (hashed only).

Without ``--address`` a one-CPU local instance is started: the object store is then shared memory and
the path a local disk, so this measures the harness's own overhead; across machines both move the bytes
over the network (the shared filesystem's, or Ray's object transfer). Medians of ``--repeats``.
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path


def _hash_path(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _hash_bytes(payload: bytes, name: str) -> str:
    from parity.engines.transfer import clip_from_payload

    with tempfile.TemporaryDirectory(prefix="parity-bench-") as tmp:
        return hashlib.sha256(clip_from_payload(payload, name, Path(tmp)).read_bytes()).hexdigest()


def _receive(sent: dict, root: str) -> float:
    import ray

    from parity.artifacts import ArtifactCache
    from parity.backends import ModelArtifacts
    from parity.engines.transfer import receive

    start = time.perf_counter()
    receive(ModelArtifacts(onnx=Path("unused.onnx")), sent, ray.get, ArtifactCache(root))
    return time.perf_counter() - start


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: worker start, imports
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0.1,1,10,100", help="file sizes in MB")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--address", help="a Ray cluster to join (default: a one-CPU local instance)")
    args = parser.parse_args()

    import os

    import ray

    from parity.engines.transfer import SentFile, clip_payload

    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, object_store_memory=600 * 1024 * 1024)
    by_path = ray.remote(num_cpus=1)(_hash_path)
    by_bytes = ray.remote(num_cpus=1)(_hash_bytes)
    receiver = ray.remote(num_cpus=1)(_receive)
    print(f"Ray {ray.__version__}, {int(ray.cluster_resources().get('CPU', 0))} CPUs, {len(ray.nodes())} nodes; medians of {args.repeats}")
    print(f"{'MB':>6} {'path ms':>9} {'bytes ms':>9} {'bytes/path':>10} {'model 1st ms':>12} {'model cached ms':>15}")
    with tempfile.TemporaryDirectory(prefix="parity-bench-") as tmp:
        for mb in (float(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"clip-{mb}.mp4"
            path.write_bytes(os.urandom(int(mb * 1024 * 1024)))
            want = hashlib.sha256(path.read_bytes()).hexdigest()
            assert ray.get(by_path.remote(str(path))) == ray.get(by_bytes.remote(clip_payload(path), path.name)) == want
            path_ms = _median_ms(lambda p=path: ray.get(by_path.remote(str(p))), args.repeats)
            bytes_ms = _median_ms(lambda p=path: ray.get(by_bytes.remote(clip_payload(p), p.name)), args.repeats)
            firsts, cached = [], []
            for i in range(args.repeats):
                sent = {"onnx": [SentFile(path.name, want, ray.put(path.read_bytes()))]}
                root = str(Path(tmp) / f"node-cache-{mb}-{i}")
                firsts.append(ray.get(receiver.remote(sent, root)) * 1000)
                cached.append(ray.get(receiver.remote(sent, root)) * 1000)
            print(f"{mb:>6g} {path_ms:>9.1f} {bytes_ms:>9.1f} {bytes_ms / path_ms:>10.1f} "
                  f"{statistics.median(firsts):>12.1f} {statistics.median(cached):>15.1f}")
            path.unlink()
    ray.shutdown()


if __name__ == "__main__":
    main()
