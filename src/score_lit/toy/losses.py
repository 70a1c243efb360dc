"""The toy MLLM's training signals: dense per-token labels from each sample's evidence, and the losses of one
forward (dense digit / colour CE, answer CE, the evidence-attention loss, the question probe's loss).

Not in the paper (the paper's frozen MLLM is pretrained): these only make the toy answer from the video. Shapes:
T temporal units, N merged tokens per unit (row-major), B samples, V = T * N visual tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from score_lit.data.common import Sample
from score_lit.mllm.positions import temporal_units
from score_lit.toy import trainable
from score_lit.toy.config import DIGIT_PX
from score_lit.toy.evidence import COLOURS
from score_lit.types import VideoBatch

NONE = 10  # dense label of a merged token that shows no answer digit (digits are 0..9)
# A 32-px digit covers 2x2 merged tokens; each shows one quadrant q (0 top-left, 1 top-right, 2 bottom-left,
# 3 bottom-right) and is labelled QUADRANT + 4 * digit + q: the tokens carry what they show, and reading the
# digit takes its tokens together (a partial view loses the answer, as the evidence benchmark intends).
QUADRANT = NONE + 1
DENSE_CLASSES = QUADRANT + 40
COLOUR_CLASSES = ("none", "white", *COLOURS)  # colour labels of the dense colour head


def dense_labels(evidence: dict, answer, frames: int, size: int, temporal_patch_size: int = 2) -> Tensor:
    """[T, N] long: the digit at the merged tokens showing it, NONE elsewhere.

    Temporal unit t covers frames [t*tps, (t+1)*tps) (the processor pads F by repeating the last frame);
    it shows an object if that range overlaps the object's frames [f0, f1). An object is a digit of `px`
    pixels (16 or 32) whose top-left 16-px cell is `cell`; it covers (px/16)^2 merged tokens, token
    n = row * (size/16) + col (the caller keeps frames unresized). Evidence of the first toy families is
    one 16-px object {"frames", "cell"} showing `answer` (label = the digit); the evidence families
    (score_lit.toy.evidence) list theirs under "objects", each with its own "label", 32 px: their tokens
    are labelled QUADRANT + 4 * digit + quadrant.
    """
    return _object_labels(
        evidence,
        frames,
        size,
        temporal_patch_size,
        lambda o, q: int(o["label"]) if q is None else QUADRANT + 4 * int(o["label"]) + q,
        answer,
    )


def colour_labels(evidence: dict, frames: int, size: int, temporal_patch_size: int = 2) -> Tensor:
    """[T, N] long: the colour class of the digit at each merged token (COLOUR_CLASSES), 0 where none."""
    return _object_labels(
        evidence,
        frames,
        size,
        temporal_patch_size,
        lambda o, q: COLOUR_CLASSES.index(o.get("colour", "white")),
        0,
        none=0,
    )


def asked_mask(
    evidence: dict, answer, frames: int, size: int, temporal_patch_size: int = 2, target: str = "asked"
) -> Tensor:
    """[T, N] bool: the merged tokens showing the question's evidence, the objects `evidence["asked"]` names
    (evidence families), or the one answer digit (first families).

    target="answer": of the asked objects, only those whose label is the answer (order: the digit that came
    first / last, not both; colour: the asked digit either way); asked objects when none is (move: the answer
    is a direction)."""
    objects = evidence.get("objects")
    if objects is not None:
        asked = [objects[i] for i in evidence.get("asked", range(len(objects)))]
        if target == "answer":
            asked = [o for o in asked if str(o["label"]) == str(answer)] or asked
        evidence = {"objects": asked}
    return _object_labels(evidence, frames, size, temporal_patch_size, lambda o, q: 1, answer, none=0).bool()


def _object_labels(evidence, frames, size, tps, value, answer, none=NONE) -> Tensor:
    t_units, side = temporal_units(frames, tps), size // DIGIT_PX
    objects = evidence.get("objects") or [
        {"label": answer, "frames": evidence["frames"], "cell": evidence["cell"], "px": DIGIT_PX}
    ]
    labels = torch.full((t_units, side * side), none, dtype=torch.long)
    for o in objects:
        f0, f1 = (int(v) for v in o["frames"])
        row, col = (int(v) for v in o["cell"])
        span = int(o.get("px", DIGIT_PX)) // DIGIT_PX
        for t in range(t_units):
            if t * tps < f1 and (t + 1) * tps > f0:
                for i in range(span):
                    for j in range(span):
                        labels[t, (row + i) * side + col + j] = value(o, None if span == 1 else i * span + j)
    return labels


def _forward(
    adapter,
    head: nn.Module,
    batch: VideoBatch,
    labels: Tensor,
    colours: Tensor,
    answers: bool,
    vision_grad: bool = True,
    asked: Tensor | None = None,
    attention_layer: int | None = None,
    question: tuple | None = None,
) -> dict[str, Tensor]:
    """Dense losses (+ answer CE, + the evidence-attention loss when attention_layer is set) through the
    adapter's own encode / score / video_attention bodies, with gradients.

    head(tokens) -> [B, T, N, DENSE_CLASSES + len(COLOUR_CLASSES)]: the digit (or digit quadrant) at each merged token (or NONE), and the
    colour of that digit (read only at digit tokens)."""
    visual = trainable.encode(adapter, batch, vision_grad)  # tokens [B, T, N, D], grad flows if vision_grad
    logits = head(visual.tokens)  # [B, T, N, DENSE_CLASSES + len(COLOUR_CLASSES)]
    digit_logits, colour_logits = logits[..., :DENSE_CLASSES], logits[..., DENSE_CLASSES:]
    digit = labels != NONE
    nll = F.cross_entropy(digit_logits.flatten(0, 2), labels.flatten(), reduction="none").view_as(labels)
    if digit.any():
        dense = nll[digit].mean() + nll[~digit].mean()  # class-balanced: digit tokens are a few % of the grid
        dense = dense + F.cross_entropy(colour_logits[digit], colours[digit])
    else:  # a batch of a few sampled units may show no digit at all
        dense = nll[~digit].mean()
    out = {
        "dense": dense,
        "digit_acc": (digit_logits.argmax(-1)[digit] == labels[digit]).float().mean()
        if digit.any()
        else torch.tensor(0.0),
    }
    if answers:
        prompts = adapter.tokenize(batch)
        masks = torch.ones(len(batch), 1, visual.num_tokens, dtype=torch.bool)
        scores = trainable.score(adapter, visual, prompts, masks)  # ce [B, 1], option_logits [B, 1, C]
        out["ce"] = scores.ce[:, 0].mean()
        out["correct"] = scores.option_logits[:, 0].argmax(-1) == batch.answer_index  # [B] bool
        out["answer_acc"] = out["correct"].float().mean()
        if attention_layer is not None:
            layer = attention_layer % len(adapter.model.model.language_model.layers)
            probs, query_input = trainable.video_attention(adapter, visual, prompts, layer)  # [B, V], [B, D]
            if question is not None:  # (probe, multi-hot [B, vocab]): which words the question holds
                probe, words = question
                qlogits = probe(query_input)  # [B, vocab]
                w = words.to(qlogits.dtype)
                # CE of each question word under one softmax, averaged over the words: at its floor the probe spreads
                # its mass evenly over exactly the question's words, so the state must say which colour / first or last
                out["question"] = (-(qlogits.log_softmax(-1) * w).sum(-1) / w.sum(-1)).mean()
                top = qlogits.topk(int(w.sum(-1).max()), -1).indices  # the probe's top words
                hit = torch.zeros_like(words).scatter(-1, top, True) & words
                out["question_acc"] = (hit.sum(-1) == words.sum(-1)).float().mean()  # every word among the top
            ev = asked.flatten(1).to(probs.device)  # [B, V] bool
            share = (probs * ev).sum(1) / probs.sum(1).clamp_min(1e-12)  # [B] evidence share of the video attention
            has = ev.any(1)
            out["attn"] = -share[has].clamp_min(1e-6).log().mean() if has.any() else torch.zeros(())
            out["attn_share"] = share[has].mean() if has.any() else torch.zeros(())
            out["shares"] = share.detach().masked_fill(~has, float("nan"))  # [B], per family in the curves
    return out


def question_words(adapter, samples: list[Sample], vocab: int) -> Tensor:
    """[B, vocab] bool: the vocabulary ids of each sample's question (the question loss's target)."""
    words = torch.zeros(len(samples), vocab, dtype=torch.bool)
    for i, s in enumerate(samples):
        words[i, adapter.tokenizer(s.question, add_special_tokens=False)["input_ids"]] = True
    return words
