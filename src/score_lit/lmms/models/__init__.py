"""lmms-eval's legacy plugin route: `LMMS_EVAL_PLUGINS=score_lit.lmms lmms-eval --model score_qwen2_5_vl ...`.

lmms-eval 0.7.3 imports `<plugin>.models`, reads AVAILABLE_MODELS {model name: class name} and loads
`<plugin>.models.<model name>.<class name>` as a SIMPLE model class (hence the simple flavour here). The preferred
route is the `lmms_eval.models` entry point (score_lit.lmms.manifests), which needs no environment variable.
Importing this package imports no lmms-eval code.
"""

AVAILABLE_MODELS = {
    "score_qwen2_5_vl": "ScoreQwen2_5_VLSimple",
    "score_llava_onevision": "ScoreLlavaOnevisionSimple",
    "score_qwen3_vl": "ScoreQwen3_VLSimple",
    "score_qwen3_5": "ScoreQwen3_5Simple",
}
