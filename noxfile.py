"""nox sessions: `nox -s tests`, `nox -s demo`, `nox -s lint`."""
import nox

nox.options.sessions = ["tests"]


@nox.session
def tests(session):
    """The test suite (trains, exports and converts a real model once, cached on disk)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


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


@nox.session
def gpu(session):
    """The GPU backends (TensorRT, ORT CUDA/TensorRT EPs, Paddle GPU/Paddle-TRT). Needs an NVIDIA GPU."""
    session.install("-e", ".[test,gpu,trt]")
    session.run("pytest", "-m", "gpu", "-rs", *session.posargs)
