"""The demo: generate clips, train a small PP-TSMv2, export, convert, and compare every backend.

Every stage is cached on disk by a content hash of its inputs (``ArtifactCache``), so a second
demo (or the test suite's fixtures, which call the same functions) rebuilds nothing.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import synth
from .artifacts import ArtifactCache, PaddleModel, convert_to_onnx, export_inference_model, sha256_file
from .clips import load_clips
from .diagnose.lint import review
from .inputs import prepare_inputs
from .models import ModelSpec, build_model
from .optional import lazy
from .preprocess import PreprocessConfig
from .train import TrainConfig, predict, top1, train

paddle = lazy("paddle")
paddle2onnx = lazy("paddle2onnx")

# The code each stage is built by: its source is part of the stage's cache key.
CLIPS_CODE = ("parity.synth",)
TRAIN_CODE = ("parity.synth", "parity.models", "parity.train", "parity.preprocess", "parity.inputs", "parity.demo")
EXPORT_CODE = ("parity.models", "parity.artifacts.paddle_model")
ONNX_CODE = ("parity.artifacts.convert", "parity.artifacts.onnx_graph", "parity.artifacts.ort", "parity.diagnose")

DEMO_MODEL = ModelSpec(
    arch="pptsm_v2",
    num_classes=len(synth.CLASSES),
    num_seg=8,
    # 112 (Scale 128 / CenterCrop 112, PaddleVideo's 256:224 ratio) keeps training at ~0.8 s a step
    # on 2 CPU cores; at 224 a step costs ~2.3 s and the demo would not finish in minutes.
    size=112,
    scale=0.25,
    depths=[1, 1, 2, 1],
    class_expand=128,
    temporal_attention=True,
    dropout=0.2,
)


@dataclass
class DemoSettings:
    train_clips: synth.SynthSpec = field(default_factory=lambda: synth.SynthSpec(clips_per_class=12, seed=0))
    val_clips: synth.SynthSpec = field(default_factory=lambda: synth.SynthSpec(clips_per_class=6, seed=1))
    model: ModelSpec = field(default_factory=lambda: DEMO_MODEL)
    train: TrainConfig = field(default_factory=TrainConfig)
    min_val_top1: float = 0.9


def build_clips(cache: ArtifactCache, spec: synth.SynthSpec, split: str) -> Path:
    """A folder with ``{split}/`` clips, ``{split}.txt`` and ``labels.txt``; returns the list path."""
    folder = cache.get_or_build(
        "clips", {"split": split, "spec": spec.to_dict()}, lambda d: synth.generate_split(d, split, spec), code=CLIPS_CODE
    )
    return folder / f"{split}.txt"


def build_trained_model(cache: ArtifactCache, settings: DemoSettings, train_list: Path, val_list: Path) -> Path:
    """Train and keep ``model.pdparams`` with ``model_spec.json`` and ``training.json``."""
    pre = PreprocessConfig.for_size(settings.model.num_seg, settings.model.size)
    key = {
        "train": settings.train_clips.to_dict(),
        "val": settings.val_clips.to_dict(),
        "model": settings.model.to_dict(),
        "cfg": settings.train.to_dict(),
        "pre": pre.to_dict(),
    }

    def build(d: Path) -> None:
        tensor_cache = cache.root / "tensors"
        x, y = _tensors(prepare_inputs(load_clips(train_list), pre, tensor_cache, desc="decode train"))
        xv, yv = _tensors(prepare_inputs(load_clips(val_list), pre, tensor_cache, desc="decode val"))
        model = build_model(settings.model)
        result = train(model, x, y, settings.train, augment=synth.augment)
        result.val_top1 = top1(predict(model, xv), yv)
        paddle.save(model.state_dict(), str(d / "model.pdparams"))
        (d / "model_spec.json").write_text(json.dumps(settings.model.to_dict(), indent=2))
        training = {
            **result.to_dict(),
            "train_clips": len(x),
            "val_clips": len(xv),
            "config": settings.train.to_dict(),
            "model": settings.model.to_dict(),
            "augmentation": "flips, transpose and time reversal with the direction label following",
        }
        (d / "training.json").write_text(json.dumps(training, indent=2))

    return cache.get_or_build("train", key, build, code=TRAIN_CODE)


def _tensors(inputs) -> tuple[np.ndarray, np.ndarray]:
    bad = [i.error for i in inputs if not i.ok]
    if bad:
        raise RuntimeError(f"generated clip failed to decode: {bad[0]}")
    return np.concatenate([i.tensor for i in inputs]), np.array([i.clip.label for i in inputs])


def load_trained(folder: Path):
    """Rebuild the dygraph model saved by ``build_trained_model``."""
    spec = ModelSpec(**json.loads((folder / "model_spec.json").read_text()))
    model = build_model(spec)
    model.set_state_dict(paddle.load(str(folder / "model.pdparams")))
    model.eval()
    return model, spec


def build_export(cache: ArtifactCache, trained: Path) -> PaddleModel:
    key = {"weights": sha256_file(trained / "model.pdparams"), "spec": (trained / "model_spec.json").read_text()}

    def build(d: Path) -> None:
        model, spec = load_trained(trained)
        export_inference_model(model, spec.num_seg, spec.size, d / "pptsm_v2")

    return PaddleModel.locate(cache.get_or_build("export", key, build, code=EXPORT_CODE) / "pptsm_v2")


def build_onnx(cache: ArtifactCache, paddle_model: PaddleModel, opset: int = 11) -> Path:
    key = {
        "model": sha256_file(paddle_model.model_file),
        "params": sha256_file(paddle_model.params_file),
        "opset": opset,
        "paddle2onnx": paddle2onnx.__version__,
    }
    folder = cache.get_or_build("onnx", key, lambda d: convert_to_onnx(paddle_model, d / "pptsm_v2.onnx", opset=opset, review=review),
                              code=ONNX_CODE)
    return folder / "pptsm_v2.onnx"


@dataclass
class DemoArtifacts:
    train_list: Path
    val_list: Path
    trained: Path
    paddle_model: PaddleModel
    onnx: Path
    training: dict


def build_all(cache: ArtifactCache, settings: DemoSettings | None = None) -> DemoArtifacts:
    settings = settings or DemoSettings()
    train_list = build_clips(cache, settings.train_clips, "train")
    val_list = build_clips(cache, settings.val_clips, "val")
    trained = build_trained_model(cache, settings, train_list, val_list)
    paddle_model = build_export(cache, trained)
    onnx_path = build_onnx(cache, paddle_model)
    training = json.loads((trained / "training.json").read_text())
    return DemoArtifacts(train_list, val_list, trained, paddle_model, onnx_path, training)


def publish(art: DemoArtifacts, out: Path) -> dict[str, Path]:
    """Copy what the demo compares into ``out`` (model/, clips/), so ``parity run`` can reuse it."""
    model_dir, clips_dir = out / "model", out / "clips"
    for d in (model_dir, clips_dir):
        if d.exists():
            shutil.rmtree(d)
    model_dir.mkdir(parents=True)
    for f in (art.paddle_model.model_file, art.paddle_model.params_file, art.onnx, art.onnx.with_suffix(".conversion.json")):
        if f.is_file():
            shutil.copy2(f, model_dir / f.name)
    shutil.copytree(art.val_list.parent, clips_dir, ignore=shutil.ignore_patterns(".complete"))
    return {
        "paddle_model": model_dir / art.paddle_model.model_file.name,
        "onnx": model_dir / art.onnx.name,
        "clips": clips_dir / art.val_list.name,
    }


def gate_inputs(out: str | Path) -> dict[str, str]:
    """The demo's artifacts for the GPU gate, published under ``out``: its models, the clips judged (val) and the
    calibration clips (train: never judged), and the trained weights' folder (for the legacy export)."""
    art = build_all(ArtifactCache())
    published = publish(art, Path(out))
    return {"paddle_model": str(published["paddle_model"]), "onnx": str(published["onnx"]), "clips": str(published["clips"]),
            "calibration": str(art.train_list), "trained": str(art.trained), "legacy_prefix": str(Path(out) / "legacy" / "pptsm_v2")}
