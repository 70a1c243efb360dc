"""The text side of an adapter: its tokenizer and prompt template -> the PromptBatch of a batch (score_lit.mllm.sequence).

`PromptBuilder` is the one prompt builder: `VideoMLLM.tokenize` (training, eval), the DataLoader's collate (it is
light and picklable: no model, so it runs in the workers) and lmms-eval's generate path (`prompt_ids`,
`generation`) all build their prompts with it. mllm.prompt_template is split at {video}; {question} is filled in
wherever it stands. The answer (and each option) is tokenized jointly with the text before it, so a BPE tokenizer
sees the real boundary, and its ids are the tail after the prefix's ids (if the boundary merged, the answer alone).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from score_lit.mllm.sequence import PromptBatch
from score_lit.types import VideoBatch


def load_tokenizer(path: str | Path, **kwargs):
    """The tokenizer of a checkpoint folder: AutoTokenizer's, unless tokenizer_config.json declares the plain
    `PreTrainedTokenizerFast` (tokenizer.json as it is), which is then loaded as declared. AutoTokenizer overrides
    the declared class for some model types (transformers 5.23: qwen3_5 -> Qwen3_5Tokenizer, right for the released
    checkpoints, which declare Qwen2Tokenizer), and that rebuilds a byte-level BPE that breaks the tiny word-level
    tokenizer score_lit.mllm.tiny saves (which declares PreTrainedTokenizerFast)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cfg = Path(path) / "tokenizer_config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("tokenizer_class") == "PreTrainedTokenizerFast":
        return PreTrainedTokenizerFast.from_pretrained(path, **kwargs)
    return AutoTokenizer.from_pretrained(path, **kwargs)


class PromptBuilder:
    """The text side of an adapter: template + tokenizer -> PromptBatch. Light and picklable (no model), so a
    DataLoader's collate can run it in the workers (score_lit.data.common.collate's `prompts=`)."""

    def __init__(self, tokenizer, template: str, seconds_per_frame: float):
        self.tokenizer = tokenizer
        self.before, self.after = template.split("{video}")
        self.seconds_per_frame = seconds_per_frame

    def ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def prompt_ids(self, question: str) -> tuple[list[int], list[int]]:
        """(ids of the text before the video, ids of the text after it up to the answer) for `question`."""
        pre, post = self.ids([self.before.replace("{question}", question), self.after.replace("{question}", question)])
        return pre, post

    def continuations(self, prefix: str, prefix_ids: list[int], conts: list[str]) -> list[list[int]]:
        """Token ids of each continuation as it follows `prefix` (joint tokenization, so a BPE sees the
        real boundary); if the joint ids do not start with the prefix's ids, the continuation alone."""
        out = []
        for cont, full in zip(conts, self.ids([prefix + c for c in conts])):
            if full[: len(prefix_ids)] == prefix_ids and len(full) > len(prefix_ids):
                out.append(full[len(prefix_ids) :])
            else:
                out.append(self.ids([cont])[0])
        return out

    def generation(self, questions: list[str], seconds_per_frame: list[float] | None = None) -> PromptBatch:
        """The prompts up to the answer, no answer and no options (lmms-eval's generate path): what a compressor reads
        (question ids, the prompt's layout for FastV); not for `score`."""
        pres, posts = zip(*(self.prompt_ids(q) for q in questions))
        spf = (
            [self.seconds_per_frame] * len(questions)
            if seconds_per_frame is None
            else [float(x) for x in seconds_per_frame]
        )
        option_ids = torch.full((len(questions), 0), -1, dtype=torch.long)
        return PromptBatch(
            list(pres),
            list(posts),
            [len(p) for p in posts],
            [0] * len(posts),
            option_ids,
            self.ids(list(questions)),
            spf,
        )

    def __call__(self, batch: VideoBatch) -> PromptBatch:
        pres, posts, starts, lens, options = [], [], [], [], []
        for b, q in enumerate(batch.questions):
            pre, prefix_ids = self.prompt_ids(q)
            prefix = self.after.replace("{question}", q)
            answer = self.continuations(prefix, prefix_ids, [batch.answers[b]])[0]
            if not answer:
                raise ValueError(f"sample {batch.ids[b]!r}: the answer {batch.answers[b]!r} tokenizes to nothing")
            pres.append(pre)
            posts.append(prefix_ids + answer)
            starts.append(len(prefix_ids))
            lens.append(len(answer))
            options.append(
                [ids[0] if ids else -1 for ids in self.continuations(prefix, prefix_ids, list(batch.options[b]))]
            )
        c = max((len(o) for o in options), default=0)
        option_ids = torch.tensor([o + [-1] * (c - len(o)) for o in options], dtype=torch.long).view(len(posts), c)
        spf = batch.seconds_per_frame
        spf = [self.seconds_per_frame] * len(posts) if spf is None else [float(x) for x in spf]
        return PromptBatch(pres, posts, starts, lens, option_ids, self.ids(list(batch.questions)), spf, list(batch.ids))
