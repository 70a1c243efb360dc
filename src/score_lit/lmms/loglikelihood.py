"""loglikelihood for the SCORE model classes, through score_lit's own adapter on the loaded model instance.

The stock lmms-eval wrappers do not implement loglikelihood; multiple_choice tasks need it. Requests are
grouped by document: the document's one video is decoded (decord, `num_frames` frames, fitted to the
wrapper's frame_size / fit as `score_lit eval` does) and encoded once, the policy selects once, and each
(context, continuation) pair is scored with the kept tokens. The result per request is the continuation's
mean cross-entropy (lmms-eval's convention: the lowest wins) with is_greedy False.
"""

from __future__ import annotations

from collections import OrderedDict


def score_loglikelihood(model, requests, name: str, num_frames: int, fps: float | None = None) -> list:
    """`model`: a SCORE wrapper (adapter, compressor, retention_ratio, frame_size, fit, task_dict, rank)."""
    import torch
    from lmms_eval.api.instance import GenerationResult
    from tqdm import tqdm

    from score_lit.compressors import apply_selection
    from score_lit.data.common import Sample, collate
    from score_lit.data.video_qa import load_video

    groups: OrderedDict = OrderedDict()  # (task, split, doc_id) -> [request index]
    for i, req in enumerate(requests):
        _, _, _, doc_id, task, split = req.args
        groups.setdefault((task, split, doc_id), []).append(i)
    res: list = [None] * len(requests)
    adapter = model.adapter
    dev = adapter.device
    for (task, split, doc_id), idx in tqdm(groups.items(), disable=model.rank != 0, desc="SCORE loglikelihood"):
        doc_to_visual = requests[idx[0]].args[2]
        videos = [v for v in doc_to_visual(model.task_dict[task][split][doc_id]) if isinstance(v, str)]
        if len(videos) != 1:
            raise NotImplementedError(f"{name} loglikelihood: one video per document ({doc_id}: {len(videos)})")
        frames, spf = load_video(videos[0], num_frames, model.frame_size, model.fit, fps)
        conts = [requests[j].args[1] for j in idx]  # every continuation of the document: the options
        visual = None
        for i in idx:
            ctx, cont = requests[i].args[:2]
            batch = collate([Sample(str(doc_id), frames, ctx, cont, conts, seconds_per_frame=spf)])
            if visual is None:
                visual = adapter.encode(batch)
                if model.compressor is None:
                    vis, masks = visual, torch.ones(1, 1, visual.num_tokens, dtype=torch.bool)
                else:
                    vis, masks = apply_selection(visual, model.compressor.select(visual, model.retention_ratio))
            scores = adapter.score(vis, adapter.tokenize(batch), masks.to(dev))
            res[i] = (float(scores.ce[0, 0]), False)
    # lmms-eval 0.7.3's evaluator passes every response through unwrap_generation_output, which turns a
    # (loss, is_greedy) tuple into its str() and breaks multiple_choice's `lls, is_greedy = zip(*results)`;
    # a GenerationResult is passed through as-is (its .text untouched), so the tuple arrives intact.
    return [GenerationResult(text=r) for r in res]
