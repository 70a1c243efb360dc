"""SCORE-compressed models for lmms-eval (the optional `lmms` extra; see tools/lmms/setup_venv.sh).

    lmms-eval --model score_qwen2_5_vl \\
        --model_args pretrained=PATH,policy=runs/stage2/policy.pt,retention_ratio=0.1 --tasks videomme ...

Registration, without touching lmms-eval's files:
* entry point (preferred): group `lmms_eval.models`, `score_qwen2_5_vl = "score_lit.lmms:manifests"`; lmms-eval
  0.7.3's registry (lmms_eval/models/registry_v2.py) loads it at import and accepts a callable returning
  ModelManifests: that one entry point registers EVERY model of MODELS (score_qwen2_5_vl, score_llava_onevision,
  score_qwen3_vl, score_qwen3_5;
  a new model needs no new entry-point line). Both the chat class (default) and the simple class
  (`--force_simple`) are registered.
* legacy: LMMS_EVAL_PLUGINS=score_lit.lmms (score_lit.lmms.models; deprecated by lmms-eval, simple class only).

Modules: hooks.py (forward pre-hooks that prune video tokens inside `generate`; no lmms-eval import),
models/score_qwen2_5_vl.py, score_llava_onevision.py, score_qwen3_vl.py, score_qwen3_5.py (the model classes,
subclasses of lmms-eval's stock qwen2_5_vl, llava_hf, qwen3_vl and qwen3_5 wrappers; import lmms-eval). Importing score_lit.lmms imports neither.
Pinned: lmms-eval==0.7.3 (the release these classes subclass; its Qwen2_5_VL __init__ and request tuples are
what the code relies on).
"""

from __future__ import annotations

MODELS = {
    "score_qwen2_5_vl": (
        "score_lit.lmms.models.score_qwen2_5_vl.ScoreQwen2_5_VLSimple",
        "score_lit.lmms.models.score_qwen2_5_vl.ScoreQwen2_5_VL",
    ),
    "score_llava_onevision": (
        "score_lit.lmms.models.score_llava_onevision.ScoreLlavaOnevisionSimple",
        "score_lit.lmms.models.score_llava_onevision.ScoreLlavaOnevision",
    ),
    "score_qwen3_vl": (
        "score_lit.lmms.models.score_qwen3_vl.ScoreQwen3_VLSimple",
        "score_lit.lmms.models.score_qwen3_vl.ScoreQwen3_VL",
    ),
    "score_qwen3_5": (
        "score_lit.lmms.models.score_qwen3_5.ScoreQwen3_5Simple",
        "score_lit.lmms.models.score_qwen3_5.ScoreQwen3_5",
    ),
}


def manifests() -> list:
    """The `lmms_eval.models` entry point's payload: one ModelManifest per SCORE model (simple + chat class)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=k, simple_class_path=s, chat_class_path=c) for k, (s, c) in MODELS.items()]


__all__ = ["MODELS", "manifests"]
