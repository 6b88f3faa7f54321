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
def lint(session):
    session.install("ruff")
    session.run("ruff", "check", "parity", "fixtures", "tests", "noxfile.py", "conftest.py")
