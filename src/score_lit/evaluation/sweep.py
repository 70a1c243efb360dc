"""The retention sweep: every method at every retention ratio on one benchmark, with the frozen MLLM.

    python -m score_lit eval conf/eval.yaml eval.methods=[score,surprise] eval.ratios=[0.1,0.05]

For each batch of questions: decode (or read the feature cache) and tokenize in the DataLoader's workers ->
encode once -> build the sequence layout (text embeddings, positions) once; then
vanilla (all tokens) once, and for each method: a ranking method (score, surprise, fastv, random:
score_lit.compressors.Ranker) ranks the batch ONCE and is cut at every ratio (keep_top), any other method
selects per ratio; each (method, ratio) then makes one LLM call on text + kept tokens. Recorded per
(method, ratio):
  accuracy         argmax over the options' first-token logits == the answer, per family; family `all`
                   is the mean of the families' accuracies (each family weighs the same);
  pct_of_vanilla   accuracy / vanilla's accuracy on the same questions in the same run, x 100;
  kept_tokens_mean visual tokens actually given to the LLM, per question; over_budget flags a method
                   that kept more than k = ceil(r * T * N) on average (e.g. whole-frame `uniform`
                   below one frame's worth);
  prefill_ms       wall time of the LLM call (text + kept tokens, through the answer-predicting
                   position) per question, batch of eval.batch_size, plus the batch's layout build (done once
                   and shared, but counted in every call, as a method run alone would pay it); select_ms the method's own time
                   (FastV's partial forward for its ranking is here, not in prefill_ms); for a ranking
                   method its ranking's time (run once, shared by the ratios) plus this ratio's cut, what
                   selecting at this ratio alone costs;
  prefill_tflops   compute per question (mean), TFLOPs: the LLM prefill over the prompt's text (before the
                   video, and after it up to the answer), the tokens the model always adds with the video
                   (Qwen3's per-unit timestamps and vision start / end, LLaVA's newline: prompt_text_tokens)
                   + the kept visual tokens, lm_head on the last position
                   (score_lit.compressors.flops.prefill_flops), plus select_tflops, what the method's selection
                   costs beyond that (compressor.selection_flops: the policy's state + MLP over all T*N tokens,
                   merging's similarities, FastV's first K layers over every token + its ranking, as FastV
                   runs in deployment; formulas and what the sweep itself executes in score_lit.compressors.flops). The
                   vision encoder is left out (the same for every method). flops_pct_of_vanilla = prefill_tflops
                   / vanilla's on the same questions x 100; a method whose selection has no formula gets NaN.
                   flops.matched_compute(rows) picks, per method, the best accuracy at no more compute than
                   SCORE's;
  vision_tflops    the vision tower's FLOPs per question (compressors.flops.vision_tower_flops; NaN for a family
                   without the formula): the whole tower for every method, vanilla included, but for a method that
                   runs the tower itself on the groups its gate lets through (`encodes`: score_prevision and its
                   variants, compressors/prevision.py), whose select_ms then also holds the gate's, the pruned
                   tower's and the policy's time; total_tflops = vision_tflops + prefill_tflops, and
                   total_flops_pct_of_vanilla its share of vanilla's.
Outputs in eval.out_dir (written by score_lit.evaluation.run): questions.jsonl (one BatchRecord per batch, score_lit.evaluation.records, appended
as it comes; eval.resume=true reads it back), sweep.json (the settings, whether it finished), results.csv
(one row per benchmark, family, method, ratio), results.md and accuracy_vs_retention.png (one line per
method; score_lit.evaluation.report); kept-token pictures of a few questions. MLflow: one parent run per
sweep and one child run per (method, ratio) (score_lit.evaluation.tracking). A video that fails to load
is reported once and left out of every row (never replaced by another question); the number evaluated is
in the table.
"""

from __future__ import annotations

import logging
import sys
import time
from functools import partial

import torch
from torch.utils.data import DataLoader, Dataset

from score_lit.config import Config, check_files
from score_lit.data.common import Problem, Sample, SampleError
from score_lit.durable import SigintLatch
from score_lit.evaluation.records import BatchRecord, KeptMap, Outcome

log = logging.getLogger("score_lit.evaluation.sweep")


class EvalDataset(Dataset):
    """The benchmark's videos (cached projector output instead, where eval.cache_dir has it); a video that fails to
    load comes back as its Problem (left out, not replaced)."""

    def __init__(self, ds, benchmark: str, cache=None):
        self.ds, self.benchmark, self.cache = ds, benchmark, cache

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Sample | Problem:
        from score_lit.data.phases import load_cached

        try:
            return load_cached(self.ds, i, self.cache)
        except SampleError as e:
            r = self.ds.records[i]
            return Problem(r.meta.get("source", self.benchmark), r.line, e.reason, r.id, e.path)


def collate_eval(items: list, prompts=None) -> tuple:
    """(VideoBatch of the good samples, tokenized by `prompts` (the adapter's PromptBuilder) here in the DataLoader's
    workers, or None; the Problems of the videos that failed to load)."""
    from score_lit.data.common import collate

    good = [s for s in items if isinstance(s, Sample)]
    return (collate(good, prompts) if good else None), [p for p in items if isinstance(p, Problem)]


def _timed(device, fn, *args):
    """(fn(*args), its wall time in seconds), the device synchronised before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t0


class _Measure:
    """What every batch needs: the model, the compressors, the LLM's sizes (FLOPs), the settings."""

    def __init__(self, cfg: Config, mllm):
        from score_lit.compressors import build_compressor

        e = cfg.eval
        self.e, self.mllm, self.dev = e, mllm, mllm.device
        self.comps = {
            m: build_compressor(
                m, mllm=mllm, policy_path=e.policy, selection=cfg.policy.selection, seed=cfg.seed, layer=e.fastv_layer
            )
            for m in e.methods
        }
        self.text_cfg = mllm.model.config.text_config  # the LLM's sizes, for the FLOPs columns
        self.no_flops: set = set()  # methods without a selection FLOPs formula (warned once)
        self.tower_flops: dict = {}  # grid -> the whole vision tower's FLOPs on one video

    def _vision_flops(self, grid, keep=None) -> float:
        """The vision tower's FLOPs on one video (all its groups, or the kept ones: keep [T*N]); NaN for a family
        without a formula (warned once). The whole tower's count is computed once per grid."""
        try:
            if keep is None:
                if grid not in self.tower_flops:
                    self.tower_flops[grid] = self.mllm.vision_flops(grid)
                return self.tower_flops[grid]
            return self.mllm.vision_flops(grid, keep)
        except NotImplementedError as err:
            if "vision" not in self.no_flops:
                self.no_flops.add("vision")
                log.warning("no vision tower FLOPs (%s); the vision_tflops column is NaN", err)
            return float("nan")

    def keys(self) -> list[tuple[str, float]]:
        return [(m, r) for m in self.e.methods for r in self.e.ratios]

    def batch(self, batch, left_out: list[Problem], viz_ids: list[str]) -> BatchRecord:
        """Vanilla, then every method at every ratio, on one batch; kept-token maps for `viz_ids`."""
        from score_lit.compressors import Selection, apply_selection, keep_top, ranks
        from score_lit.compressors.flops import prefill_flops, question_flops
        from score_lit.data.encode import encode

        e, mllm, dev, text_cfg = self.e, self.mllm, self.dev, self.text_cfg
        visual = encode(mllm, batch)
        prompts = mllm.tokenize(batch)  # built by collate_eval in the workers
        # One sequence layout (text embeddings, positions) for every score call of the batch; its build time is
        # added to each call's prefill time, as a method run alone would pay it.
        layout, lay_s = _timed(dev, mllm.layout, visual, prompts)
        ans = batch.answer_index.to(dev)
        full = torch.ones(len(batch), 1, visual.num_tokens, dtype=torch.bool, device=dev)
        text, shape = prompt_text_tokens(prompts, layout), tuple(visual.tokens.shape[1:])  # shape (T, N, D)
        scores, dt = _timed(dev, mllm.score, visual, prompts, full, layout)
        dt += lay_s
        flops = [prefill_flops(text_cfg, n + visual.num_tokens) for n in text]
        correct = (scores.option_logits[:, 0].argmax(-1) == ans).tolist()
        full_tower = [self._vision_flops(visual.grid)] * len(batch)
        vanilla = Outcome(correct, [visual.num_tokens] * len(batch), flops, [0] * len(text), dt, 0.0, full_tower)
        rec = BatchRecord(list(batch.ids), left_out, vanilla, {}, [], visual.num_tokens, tuple(visual.grid))
        video = None  # the batch's video inputs, for a method that runs the vision tower itself (`encodes`)
        for m, comp in self.comps.items():
            ranking, rank_s = _timed(dev, comp.rank, visual, prompts) if ranks(comp) else (None, 0.0)
            for r in e.ratios:
                vis, vflops = visual, vanilla.vision_flops
                if getattr(comp, "encodes", False):  # its own, pruned vision tower: its features go to the LLM
                    video = video or _video_inputs(mllm, batch, m)
                    (vis, sel, pre), sel_s = _timed(dev, comp.select_video, video, r, prompts)
                    vflops = [self._vision_flops(visual.grid, pre[j]) for j in range(len(batch))]
                elif ranking is None:
                    sel, sel_s = _timed(dev, comp.select, visual, r, prompts)
                else:  # the ranking of this batch, cut at r
                    keep, sel_s = _timed(dev, keep_top, ranking, r, visual.grid, comp.per_frame)
                    sel = Selection(keep=keep.to(visual.tokens.device))
                vis, masks = apply_selection(vis, sel)
                scores, dt = _timed(dev, mllm.score, vis, prompts, masks.to(dev), layout)
                dt += lay_s
                kept = sel.keep.sum(-1).tolist()
                sf = [_selection_flops(comp, shape, r, n, text_cfg, self.no_flops) for n in text]
                flops = [question_flops(text_cfg, n, k, s) for n, k, s in zip(text, kept, sf)]
                correct = (scores.option_logits[:, 0].argmax(-1) == ans).tolist()
                rec.methods[(m, r)] = Outcome(correct, kept, flops, sf, dt, rank_s + sel_s, vflops)
                if abs(r - e.viz_ratio) < 1e-9:
                    on_cpu = sel.keep.cpu()
                    rec.viz += [
                        KeptMap(q, m, r, on_cpu[j].tolist(), tuple(visual.grid))
                        for j, q in enumerate(batch.ids)
                        if q in viz_ids
                    ]
        return rec


@torch.no_grad()
def sweep(cfg: Config, progress=True, done: list[BatchRecord] = (), on_batch=None) -> dict:
    """Run the sweep; returns {"record": BatchRecord of every question, "rows": the report's rows, "problems",
    "benchmark", "n_tokens", "interrupted", "questions_total"}.

    Resumable: `done` holds the records (questions.jsonl) of an interrupted run of the same sweep; their
    questions are taken as recorded, not recomputed, and the sweep goes on with the rest, in the same batches
    as an uninterrupted run (complete batches only were recorded). `on_batch(record)` is called after every
    batch with its record (run_eval appends it to questions.jsonl). Ctrl-C ends the loop: the batch it cut is
    left out, and the result has interrupted=True (KeyboardInterrupt if no question was recorded yet)."""
    from tqdm import tqdm

    from score_lit.data.benchmarks import load_benchmark
    from score_lit.data.feature_cache import FeatureCache, model_key
    from score_lit.data.video_qa import VideoQADataset
    from score_lit.evaluation.report import result_rows
    from score_lit.mllm import build_mllm

    check_files(cfg)
    e = cfg.eval
    bench = load_benchmark(e.benchmark, e.root, limit=e.limit, split=e.split)
    for p in bench.problems:
        log.warning("left out: %s", p)
    if not bench.records:
        from score_lit.config import DataError

        raise DataError(f"benchmark {e.benchmark!r} at {e.root!r} has no usable question; see the problems above")
    family = {r.id: r.meta.get("family", "all") for r in bench.records}
    mllm = build_mllm(cfg.mllm)
    cache = FeatureCache(e.cache_dir, model_key(cfg.mllm, mllm.identity())) if e.cache_dir else None
    measure = _Measure(cfg, mllm)
    total = BatchRecord.merge(done, keys=measure.keys())  # an interrupted run's batches, as they were recorded
    seen = set(total.ids) | {p.sample_id for p in total.left_out}
    todo = [r for r in bench.records if r.id not in seen]
    ds = EvalDataset(VideoQADataset(todo, e.frames, e.size, e.fit, e.sample_fps, e.decode_resize), e.benchmark, cache)
    loader = DataLoader(
        ds,
        batch_size=e.batch_size,
        shuffle=False,
        collate_fn=partial(collate_eval, prompts=mllm.prompt_builder),
        num_workers=e.num_workers,
    )
    n_batches = -(-len(bench.records) // e.batch_size)
    bar = tqdm(
        loader,
        desc=f"eval {e.benchmark}",
        unit="batch",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        total=n_batches,
        initial=n_batches - len(loader),
    )
    interrupted = False
    latch = SigintLatch().install()  # a Ctrl-C swallowed on its way up (score_lit.durable) still ends the sweep here
    try:
        for batch, bad in bar:
            latch.check()
            for p in bad:
                log.warning("left out: %s", p)
            if batch is None:
                rec = BatchRecord([], bad, n_tokens=total.n_tokens, grid=total.grid)
            else:
                viz_ids = list(
                    batch.ids[: max(e.viz_samples - len(total.ids), 0)]
                )  # the first eval.viz_samples questions
                rec = measure.batch(batch, bad, viz_ids)
            if on_batch is not None:
                on_batch(rec)
            total.extend(rec)
            bar.set_postfix(_postfix(total, e.ratios))
    except KeyboardInterrupt:  # Ctrl-C: what was recorded stays; the batch it cut is left out
        interrupted = True
        bar.close()
        if not total.ids:  # cut before any batch was recorded: nothing to report
            raise
    finally:
        latch.uninstall()
    if not total.ids:
        from score_lit.config import DataError

        raise DataError(f"benchmark {e.benchmark!r}: every video was left out (see the problems above)")
    return {
        "record": total,
        "rows": result_rows(total, family, bench.name),
        "problems": list(bench.problems) + total.left_out,
        "benchmark": bench,
        "n_tokens": total.n_tokens,
        "interrupted": interrupted,
        "questions_total": len(bench.records),
    }


def _postfix(total: BatchRecord, ratios) -> dict:
    def mean(xs):
        return sum(xs) / max(len(xs), 1)

    out = {"vanilla": f"{mean(total.vanilla.correct):.3f}"}
    if ("score", ratios[-1]) in total.methods:
        out["score"] = f"{mean(total.methods[('score', ratios[-1])].correct):.3f}@{ratios[-1]}"
    return out


def _video_inputs(mllm, batch, method: str):
    """The batch's video inputs (mllm.video_inputs) for a method that encodes itself; refused for cached rows."""
    if batch.features is not None and any(f is not None for f in batch.features):
        from score_lit.config import ConfigError

        raise ConfigError(f"eval.methods: {method} runs the vision tower on frames; unset eval.cache_dir to sweep it")
    return mllm.video_inputs(batch)


def prompt_text_tokens(prompts, layout) -> list[int]:
    """Per question, the non-video tokens of its prefill up to the answer, which every method keeps (vanilla too):
    the text before the video (len(pre_ids)), the text after it up to the answer (answer_start), and what the
    adapter adds with the video (`layout.kept_text()`: the block's interleaved text, e.g. Qwen3-VL's per-unit
    timestamps and vision start / end tokens, and the suffix, e.g. LLaVA-OneVision's image_newline)."""
    extra = layout.kept_text().tolist()
    return [len(p) + s + x for p, s, x in zip(prompts.pre_ids, prompts.answer_start, extra)]


def _selection_flops(comp, shape, ratio: float, text: int, text_cfg, warned: set) -> float:
    """comp.selection_flops(...), or NaN for a compressor without a formula (warned once per method: `warned`)."""
    try:
        return comp.selection_flops(shape, ratio, text, text_cfg)
    except (AttributeError, NotImplementedError) as err:
        if comp.name not in warned:
            warned.add(comp.name)
            log.warning("%s: no selection FLOPs (%s); its FLOPs columns are NaN", comp.name, err)
        return float("nan")
