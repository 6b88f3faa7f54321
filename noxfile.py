"""nox sessions: `nox -s tests`, `nox -s demo`, `nox -s lint`, `nox -s mutations`."""
import nox

nox.options.sessions = ["tests"]


@nox.session
def tests(session):
    """The test suite (trains, exports and converts a real model once, cached on disk)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(default=False)
def mutations(session):
    """Each behaviour the README's test table names, broken on purpose (tests/mutations.py): its test must fail.

    `nox -s mutations -- --list`, `nox -s mutations -- NAME ...`, `nox -s mutations -- --clean` (also: every test passes unmutated).
    """
    session.install("-e", ".[test]")
    session.run("python", "tests/mutations.py", *session.posargs)


@nox.session
def demo(session):
    """The end-to-end demo: clips -> training -> export -> ONNX -> comparison report."""
    session.install("-e", ".")
    session.run("parity", "demo", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the code; yamllint and the GitHub/GitLab schemas on the CI examples (.pre-commit-config.yaml)."""
    session.install("pre-commit", "ruff", "yamllint", "check-jsonschema")
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure")


@nox.session
def paddle26(session):
    """Model, checkpoint and export tests under Paddle 2.6.2, which writes legacy .pdmodel programs."""
    session.install("paddlepaddle==2.6.2", "numpy<2", "polygraphy", "pytest", "pillow", "tqdm")
    session.install("--no-deps", "-e", ".")
    session.run("pytest", "tests/test_model.py", "tests/test_checkpoint.py", *session.posargs)


# The GPU set this project targets: CUDA 12.6, TensorRT 10.x (Polygraphy's builder-flag FP16) or 11.x (strongly typed FP16).
PADDLE_GPU_INDEX = "https://www.paddlepaddle.org.cn/packages/stable/cu126/"
GPU_SET = ("paddlepaddle-gpu==3.3.*", "onnxruntime-gpu>=1.20", "tensorrt-cu12>=10.0,<12", "nvidia-cuda-runtime-cu12")


@nox.session(default=False)
def gpu(session: nox.Session) -> None:
    """The GPU gate on a GPU machine: every GPU backend must really run, or the session fails.

    Installs the harness without its CPU runtimes (the CPU and GPU wheels of Paddle and ONNX Runtime are the
    same Python packages), then the GPU set, then runs the demo's gate with --require for every GPU backend.
    `nox -s gpu -- --exclude tensorrt-fp32,...` leaves out what this machine does not have.
    """
    import tomllib

    deps = tomllib.loads(open("pyproject.toml").read())["project"]["dependencies"]
    session.install(*[d for d in deps if not d.startswith(("paddlepaddle", "onnxruntime"))])
    session.install("--no-deps", "-e", ".")
    session.install("--extra-index-url", PADDLE_GPU_INDEX, *GPU_SET)
    # Polygraphy finds libcudart in LD_LIBRARY_PATH: point it at pip's nvidia wheel
    lib = session.run("python", "-c", "import nvidia.cuda_runtime, os; print(os.path.join(nvidia.cuda_runtime.__path__[0], 'lib'))",
                      silent=True).strip()
    env = {"LD_LIBRARY_PATH": lib}
    session.run("parity", "backends", env=env)
    exclude = session.posargs[session.posargs.index("--exclude") + 1].split(",") if "--exclude" in session.posargs else []
    gate = session.run("python", "-c", "import sys; from parity.backends.gpu import gate_arguments; print(' '.join(gate_arguments(sys.argv[1:])))",
                       *exclude, silent=True).split()
    session.run("parity", "demo", "--out", "reports/gpu-demo", env=env)
    session.run("parity", "run", "--paddle-model", "reports/gpu-demo/model/pptsm_v2.json", "--onnx", "reports/gpu-demo/model/pptsm_v2.onnx",
                "--clips", "reports/gpu-demo/clips/val.txt", "--calibration", "reports/gpu-demo/clips/val.txt", *gate, "--report", "reports/gpu",
                env=env)
