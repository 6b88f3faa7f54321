"""A user's own PaddleVideo config (``--pv-config``): the YAML file PaddleVideo's ``tools/export_model.py`` and
``tools/predict.py`` take with ``-c``, read for what deployment needs and nothing else.

What is read, and where PaddleVideo's configs keep it:

- ``INFERENCE``: the inference helper (``name``, e.g. ``ppTSM_Inference_helper``) and its parameters. What the config
  leaves out takes the helper's own ``__init__`` defaults, as ``build_inference_helper`` does (``parity.recipes.make``).
- The class count: ``MODEL.head.num_classes``; PP-TSMv2 configs state it as ``MODEL.backbone.class_num`` (their
  MoViNetHead has none); distillation configs (``MODEL.models``: Teacher, Student) as the Student's.
- A label-name file: PaddleVideo's recognition configs name none (``predict.py`` prints class ids; the class-name list
  is the C++ deploy's ``--char_list_file`` flag). The one key PaddleVideo reads a label map from is
  ``DATASET.test.label_file`` (AVA detection, ``tools/ava_predict.py``), so that key is honoured where present.

Relative paths resolve against the current folder, as PaddleVideo's tools read them (its configs' ``data/...`` paths
are relative to the PaddleVideo checkout the tools run in). PyYAML's safe loader, as ``paddlevideo/utils/config.py``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts.model_files import ModelFiles, model_classes
from .errors import HarnessError
from .optional import lazy
from .recipes import RECIPES, Recipe, make

yaml = lazy("yaml")  # only a run with --pv-config reads YAML (a Paddle 2.6 export environment has none)

PPTSM = "ppTSM_Inference_helper"
# The flags that override a config's INFERENCE parameter of the same name.
OVERRIDE_FLAGS = {"num_seg": "--num-seg", "short_size": "--short-size", "target_size": "--target-size"}


@dataclass(frozen=True)
class PVConfig:
    """What a PaddleVideo config says about deployment."""

    path: Path
    helper: str  # INFERENCE.name
    params: dict  # INFERENCE's parameters as written (without name)
    recipe: Recipe  # the helper with its defaults, then the config's parameters
    num_classes: int | None  # None: the config does not say
    label_file: Path | None  # None: the config names none (PaddleVideo's recognition configs never do)
    model_name: str | None = None  # the config's model_name (export_model.py's input spec and predict.py key on it)
    sha256: str = ""  # of the bytes read: the content everything above came from


@dataclass(frozen=True)
class Applied:
    """A PaddleVideo config with the run's explicit flags over it: what the run uses."""

    config: PVConfig
    recipe: Recipe  # the config's recipe, with the flags' values over its parameters
    labels: str | None  # --labels, else the config's label file
    overrides: dict = field(default_factory=dict)  # name -> {"config": its value, "from_default": not written, "flag": the flag's}
    given: tuple[str, ...] = ()  # the parameters a flag gave (overriding or equal)

    def line(self) -> str:
        """One terminal line: the config, its helper, and what the flags overrode."""
        said = ", ".join(f"{name} {o['flag']} (config: {'default ' if o['from_default'] else ''}{o['config']})"
                         for name, o in self.overrides.items())
        return (f"PaddleVideo config {self.config.path}: {self.config.helper}"
                + (f", {self.config.num_classes} classes" if self.config.num_classes is not None else "")
                + (f"; overridden by flags: {said}" if said else ""))

    def to_dict(self) -> dict:
        return {"file": str(self.config.path.resolve()), "sha256": self.config.sha256, "helper": self.config.helper, "model_name": self.config.model_name,
                "as_written": self.config.params, "params": dict(self.recipe.params), "num_classes": self.config.num_classes,
                "label_file": str(self.config.label_file) if self.config.label_file else None, "labels": self.labels,
                "overrides": self.overrides}

    def flag(self, name: str) -> str:
        """Where a parameter's value came from, for errors: its flag, else the config."""
        return OVERRIDE_FLAGS[name] if name in self.given else f"--pv-config {name}"

    def check_classes(self, art: ModelFiles) -> None:
        """The config's class count must be the model's output size (when there is a model file to read)."""
        model_path = art.paddle_model.model_file if art.paddle_model is not None else art.onnx
        if self.config.num_classes is None or model_path is None:
            return
        try:
            classes = model_classes(art)
        except HarnessError:  # the model does not say its output size: nothing to check against
            return
        if classes != self.config.num_classes:
            raise HarnessError(f"{model_path}: the model outputs {classes} classes, but {self.config.path} says "
                               f"num_classes {self.config.num_classes}; give the config the model was exported with")

    def pptsm_settings(self) -> tuple[int, int, int]:
        """(num_seg, short_size, target_size) of a ppTSM_Inference_helper config, for the PP-TSM preprocessing."""
        if self.config.helper != PPTSM:
            raise HarnessError(f"{self.config.path}: {self.config.helper} is not run by this path; it takes {PPTSM}")
        pre = self.recipe.config()  # the PP-TSM recipe's own rules (seg_len 1)
        return pre.num_seg, pre.short_size, pre.target_size


def load_pv_config(path: str | Path) -> PVConfig:
    """Read a PaddleVideo config; every problem is one line naming the file. Read once: its sha256 is of the bytes parsed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = yaml.safe_load(raw.decode("utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: PaddleVideo config not found") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise HarnessError(f"{path}: not a PaddleVideo config (not UTF-8 text)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())  # a YAML error's text spans lines
        raise HarnessError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: not a PaddleVideo config (expected MODEL, DATASET, PIPELINE and INFERENCE sections)")
    inference = data.get("INFERENCE")
    if not isinstance(inference, dict) or not isinstance(inference.get("name"), str):
        raise HarnessError(f"{path}: no INFERENCE section with a helper name (INFERENCE: name: ..._Inference_helper); "
                           "give the config tools/predict.py runs with")
    helper = inference["name"]
    params = {k: v for k, v in inference.items() if k != "name"}
    try:
        recipe = make(helper, params)  # an unsupported helper: the error lists the supported ones
    except HarnessError as exc:
        raise HarnessError(f"{path}: {str(exc).rstrip(': ')}{'' if RECIPES else ' (none yet)'}") from None
    model_name = data.get("model_name")
    return PVConfig(path, helper, params, recipe, _num_classes(path, data.get("MODEL")), _label_file(data.get("DATASET")),
                    str(model_name) if model_name is not None else None, hashlib.sha256(raw).hexdigest())


def _num_classes(path: Path, model) -> int | None:
    """MODEL.head.num_classes, else MODEL.backbone.class_num (PP-TSMv2), else the distillation Student's."""
    if not isinstance(model, dict):
        return None
    student = next((m["Student"] for m in model.get("models") or [] if isinstance(m, dict) and isinstance(m.get("Student"), dict)), None)
    for part in (model, student):
        if not isinstance(part, dict):
            continue
        for section, key in (("head", "num_classes"), ("backbone", "class_num")):
            value = (part.get(section) or {}).get(key) if isinstance(part.get(section), dict) else None
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise HarnessError(f"{path}: MODEL {section}.{key} must be a positive integer, not {value!r}")
                return value
    return None


def _label_file(dataset) -> Path | None:
    test = dataset.get("test") if isinstance(dataset, dict) else None
    name = test.get("label_file") if isinstance(test, dict) else None
    return Path(name) if isinstance(name, str) and name else None


def apply(cfg) -> Applied | None:
    """``cfg.pv_config`` with the explicit flags (--num-seg, --short-size, --target-size, --labels) over it; None without one.
    Reads the file: call it once per run or command and pass the result down, so all of it uses one reading."""
    if not getattr(cfg, "pv_config", None):
        return None
    pv = load_pv_config(cfg.pv_config)
    overrides, params = {}, {}
    for name, flag in OVERRIDE_FLAGS.items():
        value = getattr(cfg, name, None)  # a RunConfig, or a command's arguments (which may lack some)
        if value is None:
            continue
        if name not in pv.recipe.params:
            raise HarnessError(f"{flag} {value}: {pv.helper} ({pv.path}) has no {name}; it takes {', '.join(pv.recipe.params)}")
        if value != pv.recipe.params[name]:
            overrides[name] = {"config": pv.recipe.params[name], "from_default": name not in pv.params, "flag": value}
        params[name] = value
    recipe = make(pv.helper, {**pv.recipe.params, **params}) if params else pv.recipe
    given_labels = getattr(cfg, "labels", None)
    labels = given_labels or (str(pv.label_file) if pv.label_file else None)
    if given_labels and pv.label_file and Path(given_labels) != pv.label_file:
        overrides["labels"] = {"config": str(pv.label_file), "from_default": False, "flag": given_labels}
    return Applied(pv, recipe, labels, overrides, tuple(params))


def record(pv: Applied | None) -> dict:
    """results.json's preprocess entry of a --pv-config run: ``{"pv_config": ...}`` (the file and its sha256, its helper, the
    parameters as written and as run, the overrides); empty without one. ``pv``: the run's own ``apply``, not read again."""
    return {"pv_config": pv.to_dict()} if pv is not None else {}
