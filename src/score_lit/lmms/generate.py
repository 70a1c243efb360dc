"""generate_until for the SCORE model classes (videomme, mvbench, mlvu, ... as lmms-eval 0.7 runs them), for every
family, with neither torchvision nor qwen_vl_utils: decord decodes, score_lit's adapter preprocesses, the stock
`generate` of the loaded model generates, forward hooks (score_lit.inference.hooks) compress.

Per chunk of `--batch_size` requests (one generate call, left-padded rows; score_lit.inference.batch):
1. the document's one video, decoded by score_lit (`load_video`: decord, the wrapper's frame count / fps, fitted to
   frame_size / fit, scaled in the decoder or after it per the decode_resize model_arg), exactly as `score_lit eval`
   and the loglikelihood path decode it; the next chunk's videos decode in a background thread while this chunk
   generates (model_arg prefetch: chunks decoded ahead, default 1; score_lit.data.prefetch);
2. the prompt: the adapter's `prompt_ids` (score_lit's one prompt builder) over its prompt template (the family's
   chat template; for Qwen the stock wrapper's system prompt)
   with {question} = the request's text (simple classes: the context; chat classes: the text parts of the messages)
   and {video} = the adapter's `prompt_block`: the model's video placeholder token repeated
   `VideoInputs.num_placeholders` times, as the stock processor expands it (Qwen3-VL / Qwen3.5: per temporal unit
   "<t seconds>" <|vision_start|> its placeholders <|vision_end|>, as `score_lit eval` lays the video out), the
   text tokenized as score_lit tokenizes it; the compressor gets the same prompt (`PromptBuilder.generation`), so a
   question-conditioned policy (query_mlp) reads the request's question;
3. the video inputs of the stock forward (`adapter.video_inputs` / `generate_inputs`: pixel_values_videos, ...);
4. `model.generate` with the stock wrapper's generation arguments (max_new_tokens default per wrapper, temperature
   0 = greedy, top_p / num_beams, eos / pad, use_cache); the family's hooks (`hooks_class`) select with the policy
   (ratio 1: keep all) and give the LLM score_lit's position ids (`adapter.full_positions`), so the prefill is the
   one `score_lit eval` scores, and greedy generation of one token after a prompt that asks for the option alone
   is the argmax over the vocabulary at the position where score_lit eval takes the argmax over the options;
5. the new tokens decoded as the stock wrapper decodes them (skip_special_tokens; simple Qwen also cuts at `until`),
   returned as the stock class returns them (simple: str; chat: GenerationResult with the output token count).

Deviations from the stock wrappers, on purpose: frames are sampled by score_lit (`max_num_frames` / `max_frames_num`
uniformly over the clip, or at `fps`) and fitted to a square `frame_size` (as `score_lit eval`), not by
qwen_vl_utils (2 fps, then `max_num_frames` + the last frame) or the stock processors' resizing; the prompt is the
adapter's template (for llava_hf's chat class the stock processor's own chat template may differ); position ids are
score_lit's (Qwen: the original M-RoPE rule, see score_lit.mllm.positions). Images in a request are not supported
(one video per document, else a one-line error).
"""

from __future__ import annotations

import json

import torch
from torch import Tensor

from score_lit.data.prefetch import prefetched


def generate_calls(gen_kwargs: list[dict], size: int) -> list[list[int]]:
    """The requests (indices) of each generate call: requests with equal generation arguments, wherever they are in
    the list (as lmms-eval's own models group them), in their order, `size` at most per call; groups in order of
    first appearance."""
    groups: dict[str, list[int]] = {}
    for i, kwargs in enumerate(gen_kwargs):
        groups.setdefault(json.dumps(kwargs, sort_keys=True, default=repr), []).append(i)
    return [ids[j : j + size] for ids in groups.values() for j in range(0, len(ids), size)]


class ScoreGeneration:
    """Mixin of the SCORE model classes: `generate_until` (module docstring). A class sets `hooks_class` (the family's
    pruning hooks), `frame_args()` and, per simple / chat flavour, `max_new_tokens` (the stock default), `apply_until`
    and `decode_kwargs` as its stock class does."""

    hooks_class: type
    max_new_tokens: int = 1024
    apply_until: bool = False  # cut the text at gen_kwargs["until"] (the stock simple Qwen wrapper does)
    decode_kwargs: dict = {}

    def frame_args(self) -> tuple[int, float | None]:
        """(frames, fps) of this wrapper's model_args."""
        raise NotImplementedError

    _prompts = None  # the PromptBatch of the rows being generated (what a question-conditioned policy reads)
    _texts: list[str] = []  # their request texts
    selection_log: str | None = None  # model_arg: a JSONL file, one line per selection (record_selection)
    decode_resize: str = "decoder"  # model_arg: decoder | processor (score_lit.data.video_qa.load_video)
    prefetch: int = 1  # model_arg: chunks of requests decoded ahead in background threads (0: none)

    def set_decoding(self, decode_resize: str, prefetch: int) -> None:
        """The decode_resize and prefetch model_args, checked (one line each when wrong)."""
        from score_lit.config.data_eval import check_decode_resize

        self.decode_resize = check_decode_resize(decode_resize)
        self.prefetch = int(prefetch)
        if self.prefetch < 0:
            raise ValueError(f"prefetch={prefetch!r}: use 0 (decode in line) or the number of chunks to decode ahead")

    def record_selection(self, path: str, questions: list[str], keeps, doc_ids: list | None = None) -> None:
        """Append one line per selection to `selection_log` (when set): which video tokens each question kept."""
        if not self.selection_log:
            return
        import json

        with open(self.selection_log, "a") as f:
            for i, (q, keep) in enumerate(zip(questions, keeps)):
                kept = keep.reshape(-1).nonzero().squeeze(1).tolist()
                doc = None if doc_ids is None else doc_ids[i]
                line = {"path": path, "doc_id": doc, "question": q, "ratio": self.retention_ratio, "kept": kept}
                f.write(json.dumps(line) + "\n")

    def build_hooks(self, **kwargs) -> None:
        """The family's pruning hooks on the loaded model, detached until a generate call."""
        self.hooks = self.hooks_class(self.model, self._keep, **kwargs)

    def _keep(self, visual, rows: list[int]) -> Tensor:
        if self.compressor is None:  # retention_ratio 1: every token, the hooks only set the positions
            return torch.ones(visual.tokens.shape[0], visual.num_tokens, dtype=torch.bool)
        prompts = None if self._prompts is None else self._prompts.rows(rows)
        keep = self.compressor.select(visual, self.retention_ratio, prompts).keep
        self.record_selection("generate_until", [self._texts[r] for r in rows], keep)
        return keep

    # --------------------------------------------------------------- lmms-eval
    def generate_until(self, requests) -> list:
        """Requests in chunks of --batch_size (one generate call each, left-padded rows). A chunk holds requests with
        the same generation arguments (as lmms-eval's own models group them, wherever they are in the list), in the
        order given within that group; the answers come back in the order of `requests`."""
        from lmms_eval.api.instance import GenerationResult, TokenCounts
        from tqdm import tqdm

        name = type(self).__name__
        size = int(self.batch_size)
        if size < 1:
            raise ValueError(f"{name} generate_until: --batch_size {size}: use 1 or more")
        items = []
        for req in requests:
            text, videos, gen_kwargs, doc_id = self._request(req)
            if len(videos) != 1:
                raise NotImplementedError(
                    f"{name} generate_until: one video per document (doc {doc_id}: {len(videos)} videos, "
                    "images are not supported)"
                )
            items.append((text, videos[0], gen_kwargs))
        calls = generate_calls([g for _, _, g in items], size)
        chunks = [[items[i] for i in call] for call in calls]
        res = []
        bar = tqdm(total=len(items), disable=self.rank != 0, desc="SCORE generate")
        # the next chunk's videos decode in a background thread while this chunk generates (score_lit.data.prefetch)
        decoded = prefetched(self.decode_videos, [[v for _, v, _ in chunk] for chunk in chunks], self.prefetch)
        for chunk, batches in zip(chunks, decoded):
            gen_kwargs = chunk[0][2]
            outs = self.generate_frames([t for t, _, _ in chunk], batches, dict(gen_kwargs))
            for (text, _, _), (answer, n_new) in zip(chunk, outs):
                if self.apply_until:
                    until = gen_kwargs.get("until", [self.tokenizer.decode(self.eot_token_id)])
                    until = [until] if isinstance(until, str) else until
                    for term in (u for u in until if u and u != "\n\n"):  # the stock Qwen wrapper ignores "\n\n"
                        answer = answer.split(term)[0]
                if hasattr(self, "_strip_thinking"):  # the stock Qwen3-VL / Qwen3.5 wrappers drop <think>...</think>
                    answer = self._strip_thinking(answer)
                self.cache_hook.add_partial("generate_until", (text, gen_kwargs), answer)
                res.append(
                    answer
                    if self.is_simple
                    else GenerationResult(text=answer, token_counts=TokenCounts(output_tokens=n_new))
                )
            bar.update(len(chunk))
        bar.close()
        answers = [None] * len(res)
        for i, answer in zip((i for call in calls for i in call), res):
            answers[i] = answer
        return answers

    def _request(self, req) -> tuple[str, list, dict, int]:
        """(text, video paths, gen_kwargs, doc_id) of a simple or a chat request."""
        if self.is_simple:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = req.args
            visuals = doc_to_visual(self.task_dict[task][split][doc_id]) or []
            if any(not isinstance(v, str) for v in visuals):
                return context, [None, *visuals], gen_kwargs, doc_id  # an image: refused by the caller
            return context.replace("<image>", ""), list(visuals), gen_kwargs, doc_id
        from lmms_eval.protocol import ChatMessages

        _, doc_to_messages, gen_kwargs, doc_id, task, split = req.args
        messages = ChatMessages(messages=doc_to_messages(self.task_dict[task][split][doc_id]))
        images, videos, _ = messages.extract_media()
        text = "".join(c.text for m in messages.messages for c in m.content if c.type == "text")
        return text, [*images, *videos], gen_kwargs, doc_id  # images count as extra visuals: refused

    def decode_videos(self, videos: list[str]) -> list:
        """One VideoBatch of one row per video: score_lit's decoding (frame_args, frame_size, fit, decode_resize). The
        question text is filled in by `generate_frames` (generate_batch), so this runs ahead in a background thread."""
        from score_lit.data.common import Sample, collate
        from score_lit.data.video_qa import load_video

        frames_n, fps = self.frame_args()
        batches = []
        for video in videos:
            frames, spf = load_video(video, frames_n, self.frame_size, self.fit, fps, decode_resize=self.decode_resize)
            batches.append(collate([Sample("generate", frames, "", "", [], seconds_per_frame=spf)]))
        return batches

    @torch.no_grad()
    def generate_frames(self, texts: list[str], batches: list, gen_kwargs: dict) -> list[tuple[str, int]]:
        """One chunk of requests after `decode_videos`: batches = one VideoBatch of one row per request; one generate
        call with the hooks attached. -> (text, new tokens) per request."""
        from score_lit.inference.batch import generate_batch, new_tokens

        adapter = self.adapter
        gb = generate_batch(adapter, batches, texts)
        inputs = gb.model_inputs(adapter)
        # the stock wrapper's defaults (Qwen3-VL / Qwen3.5: its DEFAULT_GEN_KWARGS), then the task's
        cur = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": 0.0,
            "top_p": None,
            "num_beams": 1,
            **getattr(self, "DEFAULT_GEN_KWARGS", {}),
            **gen_kwargs,
        }
        sample = float(cur["temperature"] or 0.0) > 0
        extra = {"top_k": cur["top_k"]} if sample and cur.get("top_k") is not None else {}
        self._prompts, self._texts = gb.prompts, list(texts)
        self.hooks.positions, self.hooks.video_positions = gb.positions, gb.video_positions
        self.hooks.attach()
        try:
            out = self.model.generate(
                **inputs,
                do_sample=sample,
                temperature=cur["temperature"] if sample else None,
                top_p=cur["top_p"] if sample else None,
                num_beams=int(cur.get("num_beams") or 1),
                max_new_tokens=int(cur["max_new_tokens"]),
                use_cache=self.use_cache,
                **extra,
                eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        finally:
            self.hooks.remove()
            self.hooks.positions = self.hooks.video_positions = self._prompts = None
        news = new_tokens(out, gb.prompt_len, self.tokenizer.eos_token_id)
        return [(self.tokenizer.decode(t, skip_special_tokens=True, **self.decode_kwargs), len(t)) for t in news]
