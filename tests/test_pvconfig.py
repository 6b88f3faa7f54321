"""--pv-config: a user's own PaddleVideo config read for what deployment needs (parity/pvconfig.py).

The configs below are written the way PaddleVideo's own are (MODEL, DATASET, PIPELINE, OPTIMIZER, METRIC, INFERENCE,
model_name), one per inference helper, modelled on its configs/recognition/ files. The helpers' defaults are the
``__init__`` defaults in PaddleVideo's tools/utils.py, written here as facts, so the resolved parameters are checked
against PaddleVideo and not against the recipes' own tables. An assertion that needs a recipe module is skipped (with
``pytest.importorskip``) only while that module does not exist yet.
"""
import hashlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from parity import synth
from parity.cli import main
from parity.clips import load_clips
from parity.config import RunConfig, load_config_file
from parity.errors import HarnessError
from parity.preprocess import PreprocessConfig, load_clip_tensor
from parity.pvconfig import apply, load_pv_config
from parity.recipes import RECIPES

# Each helper's __init__ defaults (PaddleVideo tools/utils.py), and the recipe module that implements it.
HELPERS = {
    "ppTSM_Inference_helper": ("pptsm", {"num_seg": 8, "seg_len": 1, "short_size": 256, "target_size": 224, "top_k": 1}),
    "ppTSN_Inference_helper": ("pptsn", {"num_seg": 25, "seg_len": 1, "short_size": 256, "target_size": 224, "top_k": 1}),
    "TimeSformer_Inference_helper": ("timesformer", {"num_seg": 8, "seg_len": 1, "short_size": 224, "target_size": 224, "top_k": 1,
                                                     "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}),
    "TokenShift_Inference_helper": ("tokenshift", {"num_seg": 8, "seg_len": 1, "short_size": 256, "target_size": 256, "top_k": 1,
                                                   "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}),
    "VideoSwin_Inference_helper": ("videoswin", {"num_seg": 4, "seg_len": 32, "frame_interval": 2, "short_size": 224, "target_size": 224,
                                                 "top_k": 1, "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}),
    "SlowFast_Inference_helper": ("slowfast", {"num_frames": 32, "sampling_rate": 2, "target_size": 256, "alpha": 8, "top_k": 1}),
}

# MODEL sections as PaddleVideo's configs write them: the class count in the head, or (PP-TSMv2) the backbone.
MODELS = {
    "ppTSM_Inference_helper": """\
        framework: "Recognizer2D"
        backbone:
            name: "PPTSM_v2"
            pretrained: "data/PPLCNetV2_base_ssld_pretrained.pdparams"
            num_seg: 16
            class_num: {classes}
        head:
            name: "MoViNetHead"
    """,
    "ppTSN_Inference_helper": """\
        framework: "Recognizer2D"
        backbone:
            name: "ResNetTweaksTSN"
            pretrained: "data/ResNet50_vd_ssld_v2_pretrained.pdparams"
            layers: 50
        head:
            name: "ppTSNHead"
            num_classes: {classes}
            in_channels: 2048
            drop_ratio: 0.4
            std: 0.01
            ls_eps: 0.1
    """,
    "TimeSformer_Inference_helper": """\
        framework: "RecognizerTransformer"
        backbone:
            name: "VisionTransformer_tweaks"
            pretrained: "data/vit_base_patch16_224_miil_21k_trans.pdparams"
            img_size: 224
            patch_size: 16
            num_seg: 8
            attention_type: 'divided_space_time'
        head:
            name: "ppTimeSformerHead"
            num_classes: {classes}
            in_channels: 768
            std: 0.02
            ls_eps: 0.1
        runtime_cfg:
            test:
                num_seg: 8
                avg_type: 'prob'
    """,
    "TokenShift_Inference_helper": """\
        framework: "RecognizerTransformer"
        backbone:
            name: "TokenShiftVisionTransformer"
            pretrained: "data/ViT_base_patch16_224_pretrained.pdparams"
            img_size: 256
            patch_size: 16
            num_seg: 8
            attention_type: 'space_only'
            shift_div: 4
        head:
            name: "TokenShiftHead"
            num_classes: {classes}
            in_channels: 768
    """,
    "VideoSwin_Inference_helper": """\
        framework: "RecognizerTransformer"
        backbone:
            name: "SwinTransformer3D"
            pretrained: "data/swin_base_patch4_window7_224.pdparams"
            patch_size: [2, 4, 4]
            embed_dim: 128
            depths: [2, 2, 18, 2]
            num_heads: [4, 8, 16, 32]
            window_size: [8, 7, 7]
            qk_scale: None
        head:
            name: "I3DHead"
            num_classes: {classes}
            in_channels: 1024
            spatial_type: "avg"
        runtime_cfg:
            test:
                num_seg: 1
                avg_type: 'score'
    """,
    "SlowFast_Inference_helper": """\
        framework: "Recognizer3D"
        backbone:
            name: "ResNetSlowFast"
            depth: 50
            alpha: 8
            beta: 8
            width_per_group: 64
            fusion_kernel_sz: 5
        head:
            name: "SlowFastHead"
            width_per_group: 64
            alpha: 8
            beta: 8
            num_classes: {classes}
            num_frames: 32
            crop_size: 224
            dropout_rate: 0.5
    """,
}

# What each config's INFERENCE section writes (as PaddleVideo's own configs do); the rest takes the helper's defaults.
WRITTEN = {
    "ppTSM_Inference_helper": {"num_seg": 16, "target_size": 224},
    "ppTSN_Inference_helper": {"num_seg": 25, "target_size": 224},
    "TimeSformer_Inference_helper": {"num_seg": 8, "target_size": 224, "mean": [0, 0, 0], "std": [1, 1, 1]},
    "TokenShift_Inference_helper": {"num_seg": 8, "target_size": 256},
    "VideoSwin_Inference_helper": {"num_seg": 1, "seg_len": 32, "short_size": 256, "target_size": 224},
    "SlowFast_Inference_helper": {"num_frames": 32, "alpha": 8, "target_size": 256},
}
CLASSES = {"TokenShift_Inference_helper": 101}

PIPELINE = """\
DATASET:
    batch_size: 8
    num_workers: 4
    test_batch_size: 1
    train:
        format: "VideoDataset"
        data_prefix: ""
        file_path: "data/k400/train.list"
    valid:
        format: "VideoDataset"
        data_prefix: ""
        file_path: "data/k400/val.list"
    test:
        format: "VideoDataset"
        data_prefix: ""
        file_path: "data/k400/val.list"{test_extra}

PIPELINE:
    test:
        decode:
            name: "VideoDecoder"
            backend: "decord"
        sample:
            name: "Sampler"
            num_seg: 8
            seg_len: 1
            valid_mode: True
        transform:
            - Scale:
                short_size: 256
            - CenterCrop:
                target_size: 224
            - Image2Array:
            - Normalization:
                mean: [0.485, 0.456, 0.406]
                std: [0.229, 0.224, 0.225]

OPTIMIZER:
  name: 'Momentum'
  momentum: 0.9
  learning_rate:
    name: 'CosineAnnealingDecay'
    learning_rate: 0.01
    T_max: 80

METRIC:
    name: 'CenterCropMetric'
"""


def pv_yaml(folder: Path, helper: str, inference: dict | None = None, classes: int | None = None, test_extra: str = "",
            model: str | None = None, name: str = "config.yaml") -> Path:
    """A PaddleVideo-style config for ``helper``: MODEL, DATASET, PIPELINE, OPTIMIZER, METRIC, INFERENCE, model_name."""
    body = textwrap.dedent(model if model is not None else MODELS[helper]).format(classes=classes or CLASSES.get(helper, 400))
    lines = ["INFERENCE:", f"    name: '{helper}'"] + [f"    {k}: {json.dumps(v)}" for k, v in (WRITTEN[helper] if inference is None
                                                                                            else inference).items()]
    text = ("MODEL: #MODEL field\n" + textwrap.indent(body, "    ") + "\n" + PIPELINE.format(test_extra=test_extra) + "\n"
            + "\n".join(lines) + "\n\nmodel_name: \"model\"\nlog_interval: 20\nepochs: 80\nlog_level: \"INFO\"\n")
    path = folder / name
    path.write_text(text)
    return path


def needs_recipe(helper: str) -> None:
    pytest.importorskip(f"parity.recipes.{HELPERS[helper][0]}", reason=f"the {helper} recipe is not written yet")


@pytest.mark.parametrize("helper", list(HELPERS))
def test_a_config_reads_its_helper_classes_and_parameters(helper, tmp_path):
    path = pv_yaml(tmp_path, helper)
    assert yaml.safe_load(path.read_text())["INFERENCE"]["name"] == helper  # the file is YAML as PaddleVideo writes it
    needs_recipe(helper)
    pv = load_pv_config(path)
    assert (pv.helper, pv.params, pv.num_classes, pv.label_file) == (helper, WRITTEN[helper], CLASSES.get(helper, 400), None)
    # the helper's own defaults, then what the config writes
    assert pv.recipe.params == {**HELPERS[helper][1], **WRITTEN[helper]}
    assert pv.recipe.helper == helper


@pytest.mark.parametrize("helper", list(HELPERS))
def test_a_config_that_writes_nothing_but_the_name_takes_the_helpers_defaults(helper, tmp_path):
    needs_recipe(helper)
    pv = load_pv_config(pv_yaml(tmp_path, helper, inference={}))
    assert pv.params == {} and pv.recipe.params == HELPERS[helper][1]


def test_the_real_pptsmv2_config_shape_gives_the_backbone_class_count(tmp_path):
    """PP-TSMv2's configs put the class count in the backbone (class_num); the distillation ones in the Student."""
    needs_recipe("ppTSM_Inference_helper")
    distill = """\
        framework: "RecognizerDistillation"
        models:
        - Teacher:
            backbone:
                name: "ResNetTweaksTSM"
                depth: 50
            head:
                name: "ppTSMHead"
                num_classes: 400
        - Student:
            backbone:
                name: "PPTSM_v2"
                num_seg: 8
                class_num: 7
            head:
                name: "MoViNetHead"
    """
    assert load_pv_config(pv_yaml(tmp_path, "ppTSM_Inference_helper", classes=9)).num_classes == 9
    assert load_pv_config(pv_yaml(tmp_path, "ppTSM_Inference_helper", model=distill, name="d.yaml")).num_classes == 7
    headless = "framework: \"Recognizer2D\"\nbackbone:\n    name: \"ResNetTweaksTSM\"\n"
    assert load_pv_config(pv_yaml(tmp_path, "ppTSM_Inference_helper", model=headless, name="h.yaml")).num_classes is None


def test_the_label_file_is_read_where_paddlevideo_reads_one(tmp_path):
    """Recognition configs name no label file (None above); DATASET.test.label_file, the key PaddleVideo's AVA tools read,
    is honoured, and --labels overrides it."""
    needs_recipe("ppTSM_Inference_helper")
    path = pv_yaml(tmp_path, "ppTSM_Inference_helper", test_extra='\n        label_file: "data/k400/Kinetics-400_label_list.txt"')
    pv = load_pv_config(path)
    assert pv.label_file == Path("data/k400/Kinetics-400_label_list.txt")
    assert apply(RunConfig(pv_config=str(path))).labels == "data/k400/Kinetics-400_label_list.txt"
    given = apply(RunConfig(pv_config=str(path), labels="mine.txt"))
    assert given.labels == "mine.txt" and given.overrides["labels"]["flag"] == "mine.txt"


def test_flags_override_the_config_and_say_so(tmp_path):
    needs_recipe("ppTSM_Inference_helper")
    path = pv_yaml(tmp_path, "ppTSM_Inference_helper")  # num_seg 16, target_size 224; short_size left to the default 256
    plain = apply(RunConfig(pv_config=str(path)))
    assert plain.overrides == {} and plain.pptsm_settings() == (16, 256, 224)
    assert "overridden" not in plain.line() and plain.line().startswith(f"PaddleVideo config {path}: ppTSM_Inference_helper, 400 classes")
    applied = apply(RunConfig(pv_config=str(path), num_seg=8, short_size=128, target_size=224))
    assert applied.pptsm_settings() == (8, 128, 224)
    assert applied.recipe.params == {**HELPERS["ppTSM_Inference_helper"][1], "num_seg": 8, "short_size": 128, "target_size": 224}
    # target_size equals the config's: given, but no override
    assert applied.overrides == {"num_seg": {"config": 16, "from_default": False, "flag": 8},
                                 "short_size": {"config": 256, "from_default": True, "flag": 128}}
    line = applied.line()
    assert "\n" not in line and line.endswith("overridden by flags: num_seg 8 (config: 16), short_size 128 (config: default 256)")
    assert applied.to_dict()["overrides"] == applied.overrides and applied.to_dict()["as_written"] == WRITTEN["ppTSM_Inference_helper"]
    assert (applied.flag("num_seg"), applied.flag("target_size"), plain.flag("num_seg")) == ("--num-seg", "--target-size", "--pv-config num_seg")


@pytest.mark.parametrize("helper", list(HELPERS))
def test_a_flag_wins_over_every_helpers_config_and_is_reported(helper, tmp_path):
    needs_recipe(helper)
    written = WRITTEN[helper]["target_size"]
    applied = apply(RunConfig(pv_config=str(pv_yaml(tmp_path, helper)), target_size=written + 32))
    assert applied.recipe.params == {**HELPERS[helper][1], **WRITTEN[helper], "target_size": written + 32}
    assert applied.overrides == {"target_size": {"config": written, "from_default": False, "flag": written + 32}}
    assert applied.line().endswith(f"overridden by flags: target_size {written + 32} (config: {written})")


def test_a_pptsm_config_with_seg_len_is_refused_in_one_line(tmp_path):
    """PP-TSM samples one frame per segment; the PP-TSM recipe's rule, not a second copy here."""
    needs_recipe("ppTSM_Inference_helper")
    applied = apply(RunConfig(pv_config=str(pv_yaml(tmp_path, "ppTSM_Inference_helper", inference={"num_seg": 8, "seg_len": 2}))))
    with pytest.raises(HarnessError, match="seg_len 2 is not supported"):
        applied.pptsm_settings()


def test_a_flag_the_helper_does_not_take_is_one_line(tmp_path):
    needs_recipe("SlowFast_Inference_helper")
    path = pv_yaml(tmp_path, "SlowFast_Inference_helper")
    with pytest.raises(HarnessError, match=r"--num-seg 8: SlowFast_Inference_helper .* has no num_seg; it takes num_frames") as err:
        apply(RunConfig(pv_config=str(path), num_seg=8))
    assert "\n" not in str(err.value)


def test_an_unsupported_helper_is_one_line_listing_the_supported_ones(tmp_path):
    path = pv_yaml(tmp_path, "ppTSM_Inference_helper", inference={"num_seg": 8})
    path.write_text(path.read_text().replace("ppTSM_Inference_helper", "BMN_Inference_helper"))
    with pytest.raises(HarnessError) as err:
        load_pv_config(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: INFERENCE name 'BMN_Inference_helper' is not supported; supported")
    assert all(name in msg for name in RECIPES)  # every registered helper is listed


def test_an_unknown_inference_parameter_is_one_line(tmp_path):
    needs_recipe("ppTSM_Inference_helper")
    path = pv_yaml(tmp_path, "ppTSM_Inference_helper", inference={"num_seg": 8, "num_segs": 8})
    with pytest.raises(HarnessError, match=r"unknown parameter\(s\) num_segs") as err:
        load_pv_config(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


@pytest.mark.parametrize("text, says", [
    ("MODEL:\n  head: [unclosed\n", "not valid YAML at line"),
    ("MODEL:\n  head: \x07bell\n", "not valid YAML"),
    ("MODEL:\n    head:\n        num_classes: 400\n", "no INFERENCE section"),
    ("INFERENCE: ppTSM_Inference_helper\n", "no INFERENCE section"),
    ("- just\n- a list\n", "not a PaddleVideo config"),
    ("", "not a PaddleVideo config"),
])
def test_a_broken_file_is_one_line_naming_it(tmp_path, text, says):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(HarnessError) as err:
        load_pv_config(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and says in msg and "\n" not in msg


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(HarnessError, match="PaddleVideo config not found"):
        load_pv_config(tmp_path / "nope.yaml")


def test_pv_config_is_a_setting_of_the_config_file(tmp_path):
    """A parity.toml's pv_config resolves against the file's folder, as its other paths do."""
    (tmp_path / "parity.toml").write_text('pv_config = "pv/pptsm.yaml"\n')
    assert load_config_file(tmp_path / "parity.toml").pv_config == str((tmp_path / "pv/pptsm.yaml").resolve())


def test_the_cli_refuses_a_broken_config_in_one_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("MODEL: {}\n")
    for argv in (["run", "--paddle-model", "m.json", "--clips", "x"], ["preprocess", "v.mp4", "-o", "t.npy"],
                 ["tolerances", "--paddle-model", "m.json", "--onnx", "m.onnx", "--clips", "x"]):
        assert main([*argv, "--pv-config", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"parity: error: {path}: no INFERENCE section with a helper name (INFERENCE: name: ..._Inference_helper); " \
                      "give the config tools/predict.py runs with"


def demo_config(folder: Path, classes: int, **inference) -> Path:
    """The demo model's config as PaddleVideo would write it: PP-TSMv2, 8 segments, 112 crop, 128 short side."""
    return pv_yaml(folder, "ppTSM_Inference_helper", inference={"num_seg": 8, "target_size": 112, "short_size": 128, **inference},
                   classes=classes, name="pptsm_demo.yaml")


def test_run_with_pv_config_on_the_demo_model(demo_artifacts, parity_cache, tmp_path, capsys):
    """One real `parity run --pv-config`: the preprocessing comes from the config (short_size overridden by the flag),
    the class count is checked, and results.json records the config and the override."""
    needs_recipe("ppTSM_Inference_helper")
    path = demo_config(tmp_path, len(synth.CLASSES), short_size=140)
    report = tmp_path / "report"
    code = main(["run", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(demo_artifacts.onnx),
                 "--clips", str(demo_artifacts.val_list), "--backends", "paddle,onnxruntime", "--pv-config", str(path),
                 "--short-size", "128", "--report", str(report), "--cache", str(parity_cache.root)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"PaddleVideo config {path}: ppTSM_Inference_helper, 4 classes; overridden by flags: short_size 128 (config: 140)" in err
    results = json.loads((report / "results.json").read_text())
    pre = results["preprocess"]
    assert (pre["num_seg"], pre["short_size"], pre["target_size"]) == (8, 128, 112)
    assert pre["pv_config"]["helper"] == "ppTSM_Inference_helper"
    assert pre["pv_config"]["as_written"] == {"num_seg": 8, "target_size": 112, "short_size": 140}
    assert pre["pv_config"]["overrides"] == {"short_size": {"config": 140, "from_default": False, "flag": 128}}
    assert results["config"]["pv_config"] == str(path) and results["artifacts"]["pv_config_sha256"]


@pytest.fixture
def pv_reads(monkeypatch) -> list:
    """Every reading of a --pv-config file (``parity.pvconfig.load_pv_config``), by path."""
    import parity.pvconfig

    reads = []

    def counted(name):
        reads.append(name)
        return load_pv_config(name)

    monkeypatch.setattr(parity.pvconfig, "load_pv_config", counted)
    return reads


def test_a_run_reads_its_pv_config_once(demo_artifacts, parity_cache, tmp_path, capsys, pv_reads):
    """One `parity run --pv-config` reads the YAML once: what it decodes with, checks, prints and records is that one
    reading (a file edited during the run cannot be decoded with one version and recorded as another), and results.json
    holds that content's sha256."""
    needs_recipe("ppTSM_Inference_helper")
    path = demo_config(tmp_path, len(synth.CLASSES))
    report = tmp_path / "report"
    code = main(["run", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(demo_artifacts.onnx),
                 "--clips", str(demo_artifacts.val_list), "--backends", "paddle,onnxruntime", "--pv-config", str(path),
                 "--report", str(report), "--cache", str(parity_cache.root)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert len(pv_reads) == 1, pv_reads
    results = json.loads((report / "results.json").read_text())
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert results["preprocess"]["pv_config"]["sha256"] == results["artifacts"]["pv_config_sha256"] == sha


def test_a_class_count_that_is_not_the_models_is_one_line(demo_artifacts, tmp_path, capsys):
    needs_recipe("ppTSM_Inference_helper")
    path = demo_config(tmp_path, 400)
    code = main(["run", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--clips", str(demo_artifacts.val_list),
                 "--pv-config", str(path), "--report", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("parity: error: ") and "the model outputs 4 classes" in err[-1] \
        and f"{path} says num_classes 400" in err[-1]


def test_a_config_num_seg_the_model_does_not_take_names_the_config(demo_artifacts, tmp_path, capsys):
    needs_recipe("ppTSM_Inference_helper")
    path = demo_config(tmp_path, len(synth.CLASSES), num_seg=16)
    code = main(["run", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--clips", str(demo_artifacts.val_list),
                 "--pv-config", str(path), "--report", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "the model takes pv-config num_seg 8, but --pv-config num_seg 16 was given" in err[-1]


def test_preprocess_with_pv_config_writes_the_configs_tensor(demo_artifacts, tmp_path, capsys, pv_reads):
    """`parity preprocess --pv-config`: T and sizes from the config (the model agreeing), the flags over it, said in one line;
    the config read once."""
    needs_recipe("ppTSM_Inference_helper")
    path = demo_config(tmp_path, len(synth.CLASSES), short_size=140)
    clip = load_clips(str(demo_artifacts.val_list))[0].path
    out = tmp_path / "t.npy"
    assert main(["preprocess", str(clip), "-o", str(out), "--pv-config", str(path), "--paddle-model",
                 str(demo_artifacts.paddle_model.model_file), "--short-size", "128"]) == 0
    assert f"PaddleVideo config {path}: ppTSM_Inference_helper, 4 classes; overridden by flags: short_size 128 (config: 140)" \
        in capsys.readouterr().err
    assert np.array_equal(np.load(out), load_clip_tensor(clip, PreprocessConfig(8, 128, 112)))
    assert len(pv_reads) == 1, pv_reads
