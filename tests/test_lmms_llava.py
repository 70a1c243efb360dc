"""score_lit.lmms for LLaVA-OneVision (`--model score_llava_onevision`, lmms-eval's stock `llava_hf` wrappers).

* ScoreHooks1D (no lmms-eval needed, default suite): `generate` on a hooked tiny random LLaVA-OneVision equals,
  step by step, the stock forward on the FULL sequence with the dropped video tokens masked out as keys and the
  full sequence's position ids (position_ids=original), or the stock forward on the pruned inputs_embeds with its
  default positions (position_ids=compacted). The stock processor path cannot run here (LlavaOnevisionVideoProcessor
  needs torchvision), so the <video> placeholders and pixel_values_videos are built without it.
* lmms-eval (marker `lmms`, needs .venv-lmms from tools/lmms/setup_venv.sh; skipped without it, except under
  `make test`, which builds it and sets REQUIRE_LMMS=1): the real CLI on a tiny random checkpoint + random policy gives the same
  number of correct answers as `python -m score_lit eval` on the same questions and retention ratio. (The registry
  check for `score_llava_onevision` runs in test_lmms.py, in the same lmms-eval process as Qwen's.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
LMMS_VENV = ROOT / ".venv-lmms"


# ------------------------------------------------------------------------------------------------ hooks


@pytest.mark.parametrize("position_ids", ["original", "compacted"])
def test_hooks_generate_equals_masked_full_sequence(position_ids):
    from score_lit.config import MLLMConfig
    from score_lit.inference.hooks import ScoreHooks1D
    from score_lit.mllm.llava_onevision import LlavaOnevisionAdapter

    adapter = LlavaOnevisionAdapter(MLLMConfig(family="llava_onevision"))  # tiny random LLaVA-OneVision
    model = adapter.model
    frames = torch.randint(0, 256, (1, 6, 3, 40, 40), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    px = adapter.pixels(frames)
    h, w = adapter.pooled
    v = frames.shape[1] * h * w
    before, after = adapter.cfg.prompt_template.split("{video}")
    pre = adapter._ids([before])[0]
    post = adapter._ids([after.replace("{question}", "which digit appeared ?")])[0]
    vt = adapter.video_token_id
    ids = torch.tensor([pre + [vt] * (v + 1) + post])  # the stock layout: T*N frame tokens + one newline
    p = len(pre)
    chosen = torch.zeros(v, dtype=torch.bool)
    chosen[torch.randperm(v, generator=torch.Generator().manual_seed(1))[: v // 5]] = True
    seen = []

    def select(visual, rows):
        assert visual.grid == (frames.shape[1], h, w) and visual.num_tokens == v
        seen.append(visual.tokens.clone())
        return chosen[None]

    hooks = ScoreHooks1D(model, select, position_ids=position_ids).attach()
    gen = dict(max_new_tokens=4, do_sample=False, output_logits=True, return_dict_in_generate=True)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values_videos=px, **gen)
    hooks.remove()
    assert len(seen) == 1 and torch.equal(hooks.last_keep[0], chosen)
    # The hook saw the projector + pooling output without the newline, in the adapter's VisualTokens layout.
    assert torch.allclose(seen[0], adapter.encode(type("B", (), {"frames": frames})()).tokens, atol=1e-6)

    keep = torch.ones(ids.shape[1], dtype=torch.bool)
    keep[p : p + v] = chosen
    seq, ref = ids.clone(), []
    feats = model.model.get_video_features(px, return_dict=True).pooler_output.flatten(0, 1)
    for _ in range(4):
        if position_ids == "original":  # full sequence, dropped tokens masked as keys, ids 0..L-1
            attn = torch.ones_like(seq)
            attn[0, : len(keep)] = keep.long()
            pos = torch.arange(seq.shape[1])[None]
            logits = model(input_ids=seq, attention_mask=attn, position_ids=pos, pixel_values_videos=px).logits[0, -1]
        else:  # the pruned sequence's embeddings, default positions
            emb = model.get_input_embeddings()(seq)
            emb = emb.masked_scatter((seq == vt)[..., None], feats.to(emb.dtype))
            cols = torch.cat([keep, torch.ones(seq.shape[1] - len(keep), dtype=torch.bool)])
            logits = model(inputs_embeds=emb[:, cols]).logits[0, -1]
        ref.append(logits)
        seq = torch.cat([seq, logits.argmax()[None, None]], dim=1)
    assert torch.equal(out.sequences, seq)
    for step, (a, b) in enumerate(zip(out.logits, ref)):
        assert torch.allclose(a[0], b, atol=1e-4), f"decode step {step}: max |diff| {float((a[0] - b).abs().max()):.2e}"

    # Removed hooks leave the stock model; pruning did change the logits.
    plain = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values_videos=px, **gen)
    full = model(input_ids=ids, pixel_values_videos=px).logits[0, -1]
    assert torch.allclose(plain.logits[0][0], full, atol=1e-4)
    assert not torch.allclose(plain.logits[0][0], out.logits[0][0], atol=1e-3)


# ------------------------------------------------------------------------------------------------ lmms-eval
