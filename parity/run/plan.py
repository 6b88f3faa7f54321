"""What a run will do, decided before any clip is decoded: the models opened, their preprocessing, the lanes,
this shard's clips and the thread budget. Every refusal here costs no decoding."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import pvconfig
from ..artifacts import ArtifactCache, PaddleModel, sha256_file, sha256_json
from ..artifacts.model_files import check_batch, model_classes, model_input, model_inputs
from ..backends import BACKENDS, ModelArtifacts, Selection, select
from ..checkpoint import spec_from_checkpoint
from ..clips import load_clips
from ..config import RunConfig
from ..errors import HarnessError
from ..golden import GOLDEN_JSON, Golden
from ..models import ModelSpec
from ..preprocess import PreprocessConfig
from ..recipes import Recipe
from ..stream import ThreadBudget


@dataclass
class Plan:
    """The run's decisions, in one place: what every later stage reads instead of the raw config."""

    cfg: RunConfig
    art: ModelArtifacts
    golden: Golden | None
    pre: PreprocessConfig
    selection: Selection
    clips: IndexedClips
    shard: tuple[int, int] | None
    budget: ThreadBudget
    # Another PaddleVideo helper's preprocessing (``parity.recipes``), from --pv-config: the clips are decoded by it, the
    # model's inputs and rows per clip read from the model files. None: PP-TSM's own path (``pre``), as it always was.
    recipe: Recipe | None = None
    schedule: dict | None = None  # how the backends shared the cores, and the costs it was chosen from (parity.schedule)
    # --pv-config as read once, with the flags over it: what the run decodes with, checks, records and prints. None: no config.
    pv: pvconfig.Applied | None = None


def plan(cfg: RunConfig, cache: ArtifactCache | None = None, threads: int | None = None, shard: str | None = None,
         recipe: Recipe | None = None, pv: pvconfig.Applied | None = None) -> Plan:
    """Models -> preprocessing -> backend selection (the reference checked first) -> this shard's clips -> threads.

    ``recipe``: a helper's recipe given directly (tests, tools); else --pv-config's helper when it is not PP-TSM's.
    ``pv``: --pv-config already applied (the command printed it); else it is read here, the run's one reading."""
    cfg.validate(BACKENDS)
    pv = pv if pv is not None else pvconfig.apply(cfg)
    recipe = run_recipe(pv, recipe)
    art, golden = open_models(cfg, cache or ArtifactCache(), threads, recipe)
    pre = preprocess_config(cfg, art, golden, pv) if recipe is None else recipe_config(cfg, art, recipe, pv)
    selection = select(cfg, golden.name if golden else None)
    if golden is None:  # said before any clip is decoded, with what to do about it
        reason = BACKENDS[selection.reference].availability(art)
        if reason:
            runnable = [lane.name for lane in selection.lanes if lane.name in BACKENDS and BACKENDS[lane.name].availability(art) is None]
            hint = f" (e.g. --reference {runnable[0]})" if runnable else ""
            raise HarnessError(f"reference {selection.reference} cannot run: {reason.removeprefix('unavailable: ')}; "
                               f"give what it needs, or pick another --reference{hint}")
    if any(lane.backend.needs == "external" for lane in selection.lanes):
        art.classes = model_classes(art) if (art.onnx or art.paddle_model) else int(golden.logits.shape[1])
    art.batch = max(lane.batch for lane in selection.lanes)
    check_batch(art, art.batch)
    shard_spec = parse_shard(shard)
    clips = indexed_clips(cfg, golden, shard_spec)
    budget = ThreadBudget.plan(cfg.workers, threads)
    art.threads = budget.backend_threads
    return Plan(cfg, art, golden, pre, selection, clips, shard_spec, budget, recipe, pv=pv)


def run_recipe(pv: pvconfig.Applied | None, recipe: Recipe | None = None) -> Recipe | None:
    """The recipe a run decodes with: the one given, else --pv-config's; None for PP-TSM's helper (today's path)."""
    if recipe is None:
        recipe = pv.recipe if pv is not None else None
    return None if recipe is None or recipe.helper == pvconfig.PPTSM else recipe


UNJUDGED_PARAMS = {"top_k"}  # a helper's parameters that change what it prints, not its tensors


def golden_recipe_agrees(golden: Golden | None, recipe: Recipe | None) -> None:
    """Golden outputs are comparable only on the tensors they were computed from: another helper's golden logits need
    that helper with the same parameters (num_seg, sizes, mean, std, ...), and PP-TSM's need PP-TSM's path (whose
    num_seg, sizes and variant ``preprocess_config`` checks). Each disagreement is one line naming the setting."""
    if golden is None:
        return
    stored = golden.meta["preprocess"].get("recipe")
    if recipe is None:
        if stored and stored.get("helper") != pvconfig.PPTSM:
            raise HarnessError(f"{golden.folder}: golden outputs were computed with {stored.get('helper')}'s preprocessing; this run "
                               f"uses PP-TSM's (give the --pv-config they were saved with)")
        return
    if not stored:
        raise HarnessError(f"{golden.folder}: golden outputs were computed with PP-TSM's preprocessing; this run uses {recipe.helper}'s")
    mine = json.loads(json.dumps(recipe.to_dict()))  # as results.json wrote it: tuples are lists
    for key in sorted((set(stored) | set(mine)) - UNJUDGED_PARAMS, key=lambda k: (k != "helper", k)):
        if stored.get(key) != mine.get(key):
            raise HarnessError(f"{golden.folder}: golden outputs were computed with {key} {stored.get(key)!r}; this run's is "
                               f"{mine.get(key)!r} ({recipe.helper})")


def recipe_config(cfg: RunConfig, art: ModelArtifacts, recipe: Recipe, pv: pvconfig.Applied | None) -> PreprocessConfig:
    """Another helper's run: its settings come from its recipe (--pv-config with the flags over it), never from PP-TSM's
    flags or variants. ``art.pre`` stays PP-TSM's shape for what only PP-TSM does (calibration, training: unavailable)."""
    if len(cfg.preprocess_variants()) > 1:
        raise HarnessError(f"--preprocess {','.join(cfg.preprocess_variants())}: preprocessing attribution compares PP-TSM's "
                           f"preprocessing paths; this run's is {recipe.helper}")
    if pv is not None:
        pv.check_classes(art)
    art.pre = PreprocessConfig.for_size(art.num_seg or 8, art.size or 224)
    return art.pre


def open_models(cfg: RunConfig, cache: ArtifactCache, threads: int | None = None,
                recipe: Recipe | None = None) -> tuple[ModelArtifacts, Golden | None]:
    """Check the model files (and golden outputs) exist, and read the model's input (another helper's run: its inputs)."""
    art = ModelArtifacts(cache=cache, threads=threads, allow_trt_fallback=cfg.allow_trt_fallback)
    if cfg.trt_engine:
        art.trt_engine = Path(cfg.trt_engine)
        art.trust_engine = cfg.trust_engine
        if not art.trt_engine.is_file():
            raise HarnessError(f"{cfg.trt_engine}: TensorRT engine not found")
    if cfg.paddle_model:
        art.paddle_model = PaddleModel.locate(cfg.paddle_model)
    if cfg.onnx:
        art.onnx = Path(cfg.onnx)
        if not art.onnx.is_file():
            raise HarnessError(f"{cfg.onnx}: ONNX model not found")
    golden = Golden.load(cfg.golden) if cfg.golden else None
    golden_recipe_agrees(golden, recipe)  # before the model's inputs are read the way this run's preprocessing reads them
    if golden is not None and cfg.clips:
        golden.root = Path(cfg.clips) if Path(cfg.clips).is_dir() else Path(cfg.clips).parent
    if art.paddle_model is None and art.onnx is None and art.trt_engine is None:
        raise HarnessError("no model given: pass --paddle-model and/or --onnx")
    if not cfg.clips and golden is None:
        raise HarnessError("no clips given: pass --clips LIST_OR_DIR")
    if recipe is not None:
        recipe_inputs(art, recipe)
    elif art.paddle_model is None and art.onnx is None:
        art.input_name, art.num_seg, art.size = golden.meta["preprocess"]["input_name"], None, None
    else:
        art.input_name, art.num_seg, art.size = model_input(art)
    if cfg.weights:
        art.weights, art.dygraph = dygraph_model(cfg, art)
    if cfg.calibration:
        art.calibration = Path(cfg.calibration)
        if not art.calibration.exists():
            raise HarnessError(f"{cfg.calibration}: calibration clip list not found")
    return art, golden


def recipe_inputs(art: ModelArtifacts, recipe: Recipe) -> None:
    """Another helper's model: its inputs (names, dims, the recipe's layouts) from the model files, its rows per clip."""
    if art.paddle_model is None and art.onnx is None:
        raise HarnessError(f"{recipe.helper}: its model's inputs are read from the model files; give --paddle-model or --onnx")
    art.inputs = tuple(model_inputs(art, tuple(recipe.layouts)))
    art.helper, art.views = recipe.helper, recipe.views
    first = art.inputs[0]
    t, size = (first.dims[1], first.dims[3]) if first.layout == "ntchw" else (first.dims[2], first.dims[3])
    art.input_name, art.num_seg, art.size = first.name, t if t > 0 else None, size if size > 0 else None


def dygraph_model(cfg: RunConfig, art: ModelArtifacts) -> tuple[Path, dict]:
    """The checkpoint and its model: each setting from the flags, else a model_spec.json beside it, else read
    from the checkpoint itself (LTA from its keys, scale, depths and width from its shapes), else PaddleVideo's
    defaults; classes, T and size always from the exported model."""
    weights = Path(cfg.weights)
    if not weights.is_file():
        raise HarnessError(f"{weights}: training checkpoint not found")
    keys = ("arch", "temporal_attention", "scale", "depths", "class_expand")
    given = {}
    beside = weights.parent / "model_spec.json"
    if beside.is_file():
        try:
            given.update({k: v for k, v in json.loads(beside.read_text()).items() if k in keys})
        except (ValueError, AttributeError) as exc:
            raise HarnessError(f"{beside}: not a JSON object of model settings: {exc}") from None
    given.update({k: getattr(cfg, k) for k in keys if getattr(cfg, k) is not None})
    inferred = spec_from_checkpoint(weights)
    spec = ModelSpec().to_dict() | {k: inferred[k] for k in keys if k in inferred} | given
    if art.num_seg is None or art.size is None:
        raise HarnessError("--weights: the exported model does not say its segments and size; give --paddle-model or --onnx")
    spec.update(num_seg=art.num_seg, size=art.size, num_classes=model_classes(art))
    return weights, spec


def preprocess_config(cfg: RunConfig, art: ModelArtifacts, golden: Golden | None, pv: pvconfig.Applied | None) -> PreprocessConfig:
    """T and size from the model (flags, or a --pv-config's ppTSM_Inference_helper with the flags over it, must agree);
    with golden outputs, their preprocessing. Sets ``art.pre``. ``pv``: the run's applied --pv-config (read once), or None."""
    model_path = art.paddle_model.model_file if art.paddle_model else art.onnx
    num_seg, size, short_size = cfg.num_seg, cfg.target_size, cfg.short_size
    if pv is not None:  # --pv-config: its INFERENCE parameters, the flags over them; its class count checked
        pv.check_classes(art)
        num_seg, short_size, size = pv.pptsm_settings()
    flag = pv.flag if pv is not None else pvconfig.OVERRIDE_FLAGS.get
    num_seg = agree(flag("num_seg"), num_seg, art.num_seg, model_path)
    size = agree(flag("target_size"), size, art.size, model_path)
    variant = cfg.preprocess_variants()[0]
    if golden is not None:
        # The stored logits are only comparable on the very tensors they were computed from.
        g = golden.meta["preprocess"]
        num_seg = agree("--num-seg", num_seg, g["num_seg"], golden.folder)
        size = agree("--target-size", size, g["target_size"], golden.folder)
        short_size = agree("--short-size", short_size, g["short_size"], golden.folder)
        if variant not in (g["variant"], "paddlevideo"):
            raise HarnessError(f"{golden.folder}: golden outputs use {g['variant']} preprocessing, but --preprocess {variant} was given")
        variant = g["variant"]
    art.num_seg, art.size = num_seg or 8, size or 224
    try:
        art.pre = PreprocessConfig.for_size(art.num_seg, art.size, short_size, variant)
    except ValueError as exc:
        raise HarnessError(str(exc)) from None
    return art.pre


def agree(flag: str, given: int | None, from_model: int | None, model_path) -> int | None:
    """A flag and what the model file says must agree; either alone is taken."""
    if given is not None and from_model is not None and given != from_model:
        raise HarnessError(f"{model_path}: the model takes {flag.lstrip('-')} {from_model}, but {flag} {given} was given")
    return given if given is not None else from_model


class IndexedClips(list):
    """``(index in the full list, clip)`` pairs of this run (all, or one shard's), how many were listed, the
    content hash of the whole list (its paths, relative to the list's folder, and labels, in order) and notes."""

    def __init__(self, pairs=(), listed: int = 0, list_sha256: str = "", notes: list | None = None):
        super().__init__(pairs)
        self.listed, self.list_sha256, self.notes = listed, list_sha256, list(notes or [])


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` (1 <= i <= N) -> ``(i, N)``."""
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise HarnessError(f"--shard {text!r}: expected i/N, e.g. 1/4") from None
    if not 1 <= i <= n:
        raise HarnessError(f"--shard {text!r}: i must be between 1 and N")
    return i, n


def indexed_clips(cfg: RunConfig, golden: Golden | None, shard: tuple[int, int] | None) -> IndexedClips:
    """The clips this run takes: every one, or with ``--shard i/N`` those whose list index is i-1 modulo N."""
    listed = load_clips(cfg.clips) if cfg.clips else golden.clips()
    root = Path(cfg.clips) if cfg.clips else golden.folder
    root = root.parent if root.is_file() else root
    out = IndexedClips(((i, c) for i, c in enumerate(listed) if shard is None or i % shard[1] == shard[0] - 1), listed=len(listed),
                       list_sha256=sha256_json([[_relative(c.path, root), c.label] for c in listed]),
                       notes=getattr(listed, "notes", []))  # duplicate lines dropped, each clip counted once
    if shard is not None and not out:
        raise HarnessError(f"--shard {shard[0]}/{shard[1]}: {cfg.clips or golden.folder} lists {len(listed)} clip(s), so shard {shard[0]} "
                           f"of {shard[1]} has none; use at most {max(1, len(listed))} shards")
    return out


def _relative(path: Path, root: Path) -> str:
    """A clip's path as the list gives it, relative to the list's folder where it lies below it."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def label_file(cfg: RunConfig, pv: pvconfig.Applied | None) -> Path | None:
    """--labels, else the --pv-config's label file (``pv``: the run's applied config, or None), else labels.txt beside the list."""
    if cfg.labels:
        return Path(cfg.labels)
    if pv is not None and pv.labels:
        return Path(pv.labels)
    return Path(cfg.clips).parent / "labels.txt" if cfg.clips and Path(cfg.clips).is_file() else None


def artifact_record(cfg: RunConfig, art: ModelArtifacts, golden: Golden | None, pv: pvconfig.Applied | None) -> dict:
    """Paths (absolute) and sha256 of everything that was compared; --pv-config's of the bytes read (``pv``: the run's
    applied config, or None), not of the file read again."""
    labels = label_file(cfg, pv)
    artifacts = {"clips": str(Path(cfg.clips).resolve()) if cfg.clips else f"{golden.folder}/{GOLDEN_JSON}", "paddle_model": None, "onnx": None}
    if golden is not None:
        artifacts["golden"] = str(golden.folder.resolve())
        artifacts["golden_artifacts"] = golden.meta["artifacts"]
    if art.paddle_model:
        artifacts["paddle_model"] = str(art.paddle_model.model_file.resolve())
        artifacts["paddle_model_sha256"] = sha256_file(art.paddle_model.model_file)
        artifacts["paddle_params_sha256"] = sha256_file(art.paddle_model.params_file)
    if art.trt_engine:
        artifacts["trt_engine"] = str(art.trt_engine.resolve())
        artifacts["trt_engine_sha256"] = sha256_file(art.trt_engine)
    if art.onnx:
        artifacts["onnx"] = str(art.onnx.resolve())
        artifacts["onnx_sha256"] = sha256_file(art.onnx)
    if labels and labels.is_file():
        artifacts["labels"] = str(labels.resolve())
    if pv is not None:
        artifacts["pv_config_sha256"] = pv.config.sha256
    # every other file the verdict depends on, by content
    if golden is not None:
        artifacts["golden_npz_sha256"] = golden.meta.get("npz_sha256")
    if art.weights:
        artifacts["weights_sha256"] = sha256_file(art.weights)
    if art.calibration:
        artifacts["calibration_sha256"] = sha256_file(art.calibration) if art.calibration.is_file() else None
    for name, path in sorted(cfg.logits_files.items()):
        artifacts[f"logits_file:{name}:sha256"] = sha256_file(Path(path))
    return artifacts
