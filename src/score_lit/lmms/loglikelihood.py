"""loglikelihood for the SCORE model classes, through score_lit's own adapter on the loaded model instance.

The stock lmms-eval wrappers do not implement loglikelihood; multiple_choice tasks need it. Requests are
grouped by document: the document's one video is decoded (decord, `num_frames` frames, fitted to the
wrapper's frame_size / fit as `score_lit eval` does) and encoded once, the policy selects once per context with that
context's prompts (a question-conditioned policy reads the question), and each
(context, continuation) pair is scored with the kept tokens. The result per request is the continuation's
mean cross-entropy (lmms-eval's convention: the lowest wins) with is_greedy False.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


def score_loglikelihood(model, requests, name: str, num_frames: int, fps: float | None = None) -> list:
    """`model`: a SCORE wrapper (adapter, compressor, retention_ratio, frame_size, fit, decode_resize, prefetch,
    task_dict, rank)."""
    from lmms_eval.api.instance import GenerationResult
    from tqdm import tqdm

    from score_lit.data.prefetch import prefetched
    from score_lit.data.video_qa import load_video

    groups: OrderedDict = OrderedDict()  # (task, split, doc_id) -> [request index]
    for i, req in enumerate(requests):
        _, _, _, doc_id, task, split = req.args
        groups.setdefault((task, split, doc_id), []).append(i)
    res: list = [None] * len(requests)

    def decode(group):
        (task, split, doc_id), idx = group
        doc_to_visual = requests[idx[0]].args[2]
        videos = [v for v in doc_to_visual(model.task_dict[task][split][doc_id]) if isinstance(v, str)]
        if len(videos) != 1:
            raise NotImplementedError(f"{name} loglikelihood: one video per document ({doc_id}: {len(videos)})")
        return load_video(videos[0], num_frames, model.frame_size, model.fit, fps, decode_resize=model.decode_resize)

    # the next document's video decodes in a background thread while this one is scored (score_lit.data.prefetch)
    decoded = prefetched(decode, list(groups.items()), model.prefetch)
    for ((task, split, doc_id), idx), (frames, spf) in tqdm(
        zip(groups.items(), decoded), total=len(groups), disable=model.rank != 0, desc="SCORE loglikelihood"
    ):
        pairs = [tuple(requests[j].args[:2]) for j in idx]
        scores = document_scores(
            model.adapter, model.compressor, model.retention_ratio, str(doc_id), frames, spf, pairs
        )
        for i, (ce, _) in zip(idx, scores):
            res[i] = (ce, False)
        if model.compressor is not None and hasattr(model, "record_selection"):
            first = {ctx: k for (ctx, _), (_, k) in zip(pairs, scores)}  # one selection per context
            model.record_selection("loglikelihood", list(first), list(first.values()), [doc_id] * len(first))
    # lmms-eval 0.7.3's evaluator passes every response through unwrap_generation_output, which turns a
    # (loss, is_greedy) tuple into its str() and breaks multiple_choice's `lls, is_greedy = zip(*results)`;
    # a GenerationResult is passed through as-is (its .text untouched), so the tuple arrives intact.
    return [GenerationResult(text=r) for r in res]


def document_scores(
    adapter, compressor, ratio: float, doc_id: str, frames, spf: float | None, pairs: list[tuple[str, str]]
) -> list[tuple[float, Tensor]]:
    """(mean CE, keep [T*N] bool) of each (context, continuation) of one document's video (frames [F, H, W, 3] uint8): encoded once,
    the compressor (None = keep all) selects once per context, with that context's prompts (a question-conditioned
    policy reads the question), every pair scored with its kept tokens."""
    import torch

    from score_lit.compressors import apply_selection
    from score_lit.data.common import Sample, collate

    conts = [cont for _, cont in pairs]  # every continuation of the document: the options
    visual, selected, out = None, {}, []
    for ctx, cont in pairs:
        batch = collate([Sample(doc_id, frames, ctx, cont, conts, seconds_per_frame=spf)])
        prompts = adapter.tokenize(batch)
        if visual is None:
            visual = adapter.encode(batch)
        if ctx not in selected:
            if compressor is None:
                selected[ctx] = visual, torch.ones(1, 1, visual.num_tokens, dtype=torch.bool)
            else:
                selected[ctx] = apply_selection(visual, compressor.select(visual, ratio, prompts))
        vis, masks = selected[ctx]
        out.append((float(adapter.score(vis, prompts, masks.to(adapter.device)).ce[0, 0]), masks[0, 0]))
    return out
