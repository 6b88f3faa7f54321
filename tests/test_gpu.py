"""The GPU backends on a real GPU (`nox -s gpu`). On a machine without one they are skipped, with why."""
import dataclasses

import pytest

from parity.backends import BACKENDS

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

GPU = [name for name, b in BACKENDS.items() if b.device == "gpu"]


@pytest.mark.parametrize("name", GPU)
def test_gpu_backend_matches_paddle_cpu(name, demo_artifacts, demo_run_config, parity_cache, tmp_path):
    reason = BACKENDS[name].availability()
    if reason:
        pytest.skip(f"{name}: {reason}")
    if BACKENDS[name].needs_legacy_program and demo_artifacts.paddle_model.model_file.suffix == ".json":
        pytest.skip(f"{name} takes only a legacy .pdmodel program: `nox -s gpu` gates it on the demo exported under Paddle 2.6.2")
    from parity.run import run

    calibration = str(demo_artifacts.train_list) if BACKENDS[name].needs_calibration else None  # calibrated on clips it is not judged on
    cfg = dataclasses.replace(demo_run_config, backends=["paddle", name], require=[name], calibration=calibration, report=str(tmp_path))
    result = run(cfg, cache=parity_cache)
    (comparison,) = result.comparisons
    assert result.verdict == "pass", comparison.reasons
