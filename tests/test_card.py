"""The model card of a policy folder (score_lit.training.card): the whole text of a small config.json by hand, its
front matter as YAML, and what a folder exported before the run's config was recorded says. A card written by a
real training export: test_smoke_fit; one with a real eval sweep's headline (`score_lit card --eval`): test_eval;
loading with and without a card: test_checkpoint."""

import yaml

from score_lit.training.card import model_card

CONFIG = {
    "format": "score_lit.policy/v1",
    "policy_config": {"name": "mlp", "hidden": 8},
    "in_dim": 32,
    "mllm": {"family": "qwen2_5_vl", "hidden_size": 16, "path": "/models/qwen"},
    "meta": {
        "global_step": 3,
        "phase": "stage1",
        "run_name": "tiny",
        "seed": 1,
        "mlflow_run_id": "r1",
        "score_lit_version": "0.1.0",
        "config": {
            "name": "tiny",
            "seed": 1,
            "out_dir": "runs",
            "phases": ["stage1"],
            "init_policy": None,
            "stage1": {
                "steps": 4,
                "data": {
                    "source": "synthetic",
                    "families": ["flash"],
                    "train_samples": 10,
                    "seed": 0,
                    "frames": 4,
                    "size": 32,
                    "batch_size": 2,
                },
            },
            "rl": {"group_size": 4},
            "optim": {"lr": 0.01},
        },
    },
    "weights_sha256": "ab12",
}
EVAL = {
    "sweep": "runs/eval/tiny",
    "benchmark": "toy",
    "split": "test",
    "questions": 6,
    "vanilla_accuracy": 0.5,
    "score_rows": [
        {"retention_ratio": 0.25, "accuracy": 0.5, "pct_of_vanilla": 100.0, "flops_pct_of_vanilla": 30.0},
        {"retention_ratio": 0.05, "accuracy": 1 / 3, "pct_of_vanilla": 66.66, "flops_pct_of_vanilla": float("nan")},
    ],
    "matched": "Matched compute.\n\n| a | b |\n",
    "weights_checked": True,
    "policy": "runs/tiny/policy",
}

# Every value below comes from CONFIG / EVAL (checked by hand): the front matter's backbone and fingerprint, the two
# key/value tables, the data row (synthetic flash, 10 samples, 4 frames of 32 px, batches of 2), "3 of 4" steps (so
# the validation-export note), the eval rows (1/3 -> 33.3, 66.66 -> 66.7, a NaN FLOPs share -> "-"), matched.md's
# text as given, and the run's folder runs/tiny/policy in the usage lines.
EXPECTED = """---
library_name: score_lit
tags:
- score_lit
- video-llm
- visual-token-compression
- token-pruning
- reinforcement-learning
- qwen2_5_vl
base_model: /models/qwen
score_lit:
  format: score_lit.policy/v1
  family: qwen2_5_vl
  hidden_size: 16
  policy: mlp
  global_step: 3
  weights_sha256: ab12
---

# SCORE policy `tiny` for `qwen2_5_vl`

A visual-token compression policy (`mlp`) trained with reinforcement learning by score_lit. It scores every visual token the frozen video MLLM below produces (from the token and its change since the previous frame); the top fraction is kept and the rest never reaches the LLM. It holds no weight of the backbone: it runs beside it, unchanged.

## Backbone

| | |
|---|---|
| family | `qwen2_5_vl` |
| width (the LLM's hidden size) | 16 |
| checkpoint | `/models/qwen` |

Loading the policy for another family or width is refused: its tokens mean other things.

## Recipe

### Policy (`policy.*`), reading states of width 32

| key | value |
|---|---|
| `name` | mlp |
| `hidden` | 8 |

### RL (`rl.*`)

| key | value |
|---|---|
| `group_size` | 4 |

### Optimizer (`optim.*`)

| key | value |
|---|---|
| `lr` | 0.01 |

<details><summary>The run's full resolved config</summary>

```json
{
  "name": "tiny",
  "seed": 1,
  "out_dir": "runs",
  "phases": [
    "stage1"
  ],
  "init_policy": null,
  "stage1": {
    "steps": 4,
    "data": {
      "source": "synthetic",
      "families": [
        "flash"
      ],
      "train_samples": 10,
      "seed": 0,
      "frames": 4,
      "size": 32,
      "batch_size": 2
    }
  },
  "rl": {
    "group_size": 4
  },
  "optim": {
    "lr": 0.01
  }
}
```

</details>

## Training data and steps

| phase | steps | data | frames x size | batch |
|---|---|---|---|---|
| stage1 | 4 | synthetic (flash), 10 samples, seed 0 | 4 x 32 px | 2 |

Trained 3 of 4 optimizer steps (exported at a validation: the run was still going, or was stopped there); exported in phase `stage1`. Started from a random initialisation. Seed 1; run `tiny`, MLflow run `r1`; score_lit 0.1.0.

## Evaluation

### `toy`, split `test`: 6 questions (sweep `runs/eval/tiny`)

SCORE's accuracy by retention, family `all` (vanilla, every token kept: 50.0%):

| retention | accuracy % | % of vanilla | prefill FLOPs % of vanilla |
|---|---|---|---|
| 25% | 50.0 | 100.0 | 30.0 |
| 5% | 33.3 | 66.7 | - |

Matched compute.

| a | b |

## How to use

```python
import score_lit

policy = score_lit.load_policy("runs/tiny/policy")
with score_lit.compress(model, processor, policy, ratio=0.1) as sc:  # keep 10% of the visual tokens
    inputs = sc.prepare(videos, questions)  # mp4 paths or uint8 frames [F, H, W, 3], one question each
    out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
print(sc.decode(out))
```

`model` and `processor` are the backbone above, loaded with transformers. Within score_lit: `python -m score_lit eval conf/eval.yaml eval.policy=runs/tiny/policy` sweeps it against the training-free methods, and `score_lit.training.checkpoint.load_policy(path, expect_mllm=...)` returns the policy and this folder's config.

## Files

| file | what |
|---|---|
| `config.json` | format, policy config, state width, backbone identity, training meta, the weights' sha256: what loading reads |
| `model.safetensors` | the policy's weights (sha256 `ab12`) |
| `README.md` | this card, generated from config.json; `python -m score_lit card FOLDER [--eval SWEEP ...]` writes it again |
"""


def test_the_card_of_a_small_config_is_the_text_checked_by_hand():
    assert model_card(CONFIG, [EVAL]) == EXPECTED


def test_the_front_matter_is_hub_yaml():
    text = model_card(CONFIG)
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["library_name"] == "score_lit" and meta["base_model"] == "/models/qwen"
    assert "qwen2_5_vl" in meta["tags"] and "score_lit" in meta["tags"]
    assert meta["score_lit"] == {
        "format": "score_lit.policy/v1",
        "family": "qwen2_5_vl",
        "hidden_size": 16,
        "policy": "mlp",
        "global_step": 3,
        "weights_sha256": "ab12",
    }


def test_without_an_evaluation_the_card_says_how_to_add_one():
    text = model_card(CONFIG)
    section = text.split("## Evaluation\n", 1)[1].split("\n## ", 1)[0]
    assert "No evaluation is recorded" in section
    assert "python -m score_lit eval conf/eval.yaml eval.policy=runs/tiny/policy eval.out_dir=runs/eval/tiny" in section
    assert "python -m score_lit card runs/tiny/policy --eval runs/eval/tiny" in section


def test_a_folder_exported_before_the_run_config_was_recorded_still_gets_a_card():
    old = {**CONFIG, "meta": {"global_step": 3}}  # what save_policy_dir wrote before cards (and tests' exports)
    text = model_card(old)
    assert "Exported at step 3." in text and "is not recorded in this folder" in text
    assert "### RL" not in text and "<details>" not in text  # nothing invented
    assert 'score_lit.load_policy("PATH/TO/THIS/FOLDER")' in text
    assert "| `name` | mlp |" in text  # the policy config is always in config.json
