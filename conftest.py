"""Top-level conftest: makes the artifact fixtures in fixtures/ available to every test."""
import os

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("PARITY_PROGRESS", "0")

pytest_plugins = ["fixtures.artifacts"]
