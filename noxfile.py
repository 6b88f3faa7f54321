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
    """ruff on the code; yamllint and the GitHub/GitLab schemas on the CI examples (.pre-commit-config.yaml); the import
    layers ([tool.importlinter] in pyproject.toml: lint-imports builds the graph from the installed package)."""
    session.install("pre-commit", "ruff", "yamllint", "check-jsonschema", "import-linter")
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure")
    session.install("--no-deps", "-e", ".")
    session.run("lint-imports", "--no-cache")


@nox.session
def paddle26(session):
    """Model, checkpoint and export tests under Paddle 2.6.2, which writes legacy .pdmodel programs."""
    session.install("paddlepaddle==2.6.2", "numpy<2", "polygraphy", "pytest", "pillow", "tqdm")
    session.install("--no-deps", "-e", ".")
    session.run("pytest", "tests/test_model.py", "tests/test_checkpoint.py", *session.posargs)


# The GPU set: one CUDA 12 stack whose parts link the same libraries (checked against PyPI's metadata, see the README's
# GPU section). onnxruntime-gpu 1.24.4: the last line built for CUDA 12 is 1.26 (1.27+ require CUDA 13 wheels), and
# 1.24's TensorRT EP is built and tested with TensorRT 10.14 (libnvinfer.so.10). paddlepaddle-gpu 3.x is only on
# Paddle's own index (PyPI stops at 2.6.2). tensorrt-cu12's libs come from NVIDIA's index.
PADDLE_GPU_INDEX = "https://www.paddlepaddle.org.cn/packages/stable/cu126/"
NVIDIA_INDEX = "https://pypi.nvidia.com"
GPU_SET = ("paddlepaddle-gpu==3.3.1", "onnxruntime-gpu[cuda,cudnn]==1.24.4", "tensorrt-cu12==10.14.1.48.post1", "polygraphy==0.53.6",
           "nvidia-cuda-runtime-cu12")


@nox.session(default=False)
def gpu(session: nox.Session) -> None:
    """The GPU gate on a GPU machine: every GPU backend must really run, or the session fails.

    Installs the harness without its CPU runtimes (the CPU and GPU wheels of Paddle and ONNX Runtime are the
    same Python packages), then the GPU set; exports the demo model as a legacy .pdmodel under Paddle 2.6.2 in a
    side environment (Paddle-TRT takes only legacy programs); then runs the gates with --require for every GPU
    backend, INT8 calibrated on the train clips and judged on the val clips.
    `nox -s gpu -- --exclude tensorrt-fp32,...` leaves out what this machine does not have.
    """
    import json

    import tomllib

    deps = tomllib.loads(open("pyproject.toml").read())["project"]["dependencies"]
    session.install(*[d for d in deps if not d.startswith(("paddlepaddle", "onnxruntime"))])
    session.install("--no-deps", "-e", ".")
    session.install("--extra-index-url", PADDLE_GPU_INDEX, "--extra-index-url", NVIDIA_INDEX, *GPU_SET)
    # Polygraphy finds libcudart in LD_LIBRARY_PATH: point it at pip's nvidia wheel
    lib = session.run("python", "-c", "import nvidia.cuda_runtime, os; print(os.path.join(nvidia.cuda_runtime.__path__[0], 'lib'))",
                      silent=True).strip()
    env = {"LD_LIBRARY_PATH": lib}
    session.run("parity", "backends", env=env)
    exclude = session.posargs[session.posargs.index("--exclude") + 1].split(",") if "--exclude" in session.posargs else []
    inputs = json.loads(session.run("python", "-c", "import json; from parity.demo import gate_inputs; print(json.dumps(gate_inputs('reports/gpu-demo')))",
                                    silent=True).strip().splitlines()[-1])
    legacy = inputs["legacy_prefix"] + ".pdmodel"
    if not {"paddle-trt-fp32", "paddle-trt-fp16"} <= set(exclude):
        export, packages = json.loads(session.run("python", "-c", "import json; from parity.backends.gpu import LEGACY_EXPORT, LEGACY_PADDLE; "
                                                  "print(json.dumps([LEGACY_EXPORT, LEGACY_PADDLE]))", silent=True).strip().splitlines()[-1])
        side = f"{session.create_tmp()}/paddle26"
        session.run("python", "-m", "venv", side)
        session.run(f"{side}/bin/pip", "install", "-q", *packages, external=True)
        session.run(f"{side}/bin/pip", "install", "-q", "--no-deps", "-e", ".", external=True)
        session.run(f"{side}/bin/python", "-c", export, inputs["trained"], inputs["legacy_prefix"], external=True)
    commands = json.loads(session.run("python", "-c", "import json, sys; from parity.backends.gpu import gate_commands; "
                                      "print(json.dumps(gate_commands(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:])))",
                                      json.dumps(inputs), legacy, *exclude, silent=True).strip().splitlines()[-1])
    for argv in commands:
        session.run("parity", *argv, env=env)
