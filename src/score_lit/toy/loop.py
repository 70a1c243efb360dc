"""The toy MLLM's training loop: the grid / vision / joint stages over one deterministic sample stream, the
training state (save, resume, stop after a step, start from another run), then the saved model's evaluation.

The recipe is score_lit.toy.model's docstring; the knobs are score_lit.toy.config.ToyConfig.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from score_lit.config import MLLMConfig
from score_lit.mllm.positions import temporal_units
from score_lit.mllm.tiny import save_hf_dir
from score_lit.toy.config import EVIDENCE_FAMILIES, ToyConfig
from score_lit.toy.evaluate import evaluate, plot_history
from score_lit.toy.evidence import SETTINGS
from score_lit.toy.losses import COLOUR_CLASSES, DENSE_CLASSES, _forward, question_words
from score_lit.toy.model import build_toy_model, grid_samples, make_batch, make_samples, model_sizes


def _run_stage(
    name,
    adapter,
    head,
    cfg,
    opt,
    sched,
    steps,
    answers,
    step_offset,
    t0,
    history,
    stop=None,
    start=0,
    on_step=None,
    probe: nn.Module | None = None,
) -> int:
    """Optimizer steps over the stream; a progress line every cfg.log_every steps. Returns steps taken.

    Vision stage: global step step_offset + step draws from group cfg.step_group(...); joint stage (step_offset
    = the vision steps taken): from cfg.joint_group(step_offset, step). One video shape per batch: the next
    cfg.batch_size (evidence group: cfg.evidence_batch_size) samples of that group's deterministic stream.
    start: the first step (a resumed run); on_step(steps done) after every step (the checkpoint hook); probe: the
    question loss's linear probe (cfg.question_weight)."""
    tps = adapter.temporal_patch_size
    groups = cfg.groups()
    window: dict[str, list[float]] = {}
    for step in range(start, steps):
        g, n_prev = cfg.joint_group(step_offset, step) if answers else cfg.step_group(step_offset + step)
        evidence = groups[g][0] in EVIDENCE_FAMILIES
        bs = cfg.evidence_batch_size if evidence else cfg.batch_size
        easy = answers and step < cfg.easy_fraction * steps
        samples = make_samples(cfg, "train", n_prev * bs, bs, families=groups[g], easy=easy)
        units = None
        if evidence and not answers:  # vision stage: a few random units of each long video
            t_units = temporal_units(samples[0].frames.shape[0], tps)
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step_offset + step)
            units = torch.rand(len(samples), t_units, generator=gen).argsort(-1)[:, : cfg.vision_units].sort(-1).values
        batch, labels, colours, asked = make_batch(samples, cfg, tps, units)
        frozen = answers and (evidence or cfg.freeze_vision_in_joint)  # the vision tower gets no gradient
        attn_layer = cfg.attention_layer if answers and cfg.attention_weight > 0 else None
        question = (
            (probe, question_words(adapter, samples, probe.out_features)) if answers and probe is not None else None
        )
        out = _forward(
            adapter,
            head,
            batch,
            labels,
            colours,
            answers,
            vision_grad=not frozen,
            asked=asked,
            attention_layer=attn_layer,
            question=question,
        )
        if evidence:
            out["digit_acc_ev"] = out["digit_acc"]  # the evidence families' share, shown apart
        dense = out["dense"] if not frozen else 0.0
        loss = dense * (cfg.dense_weight if answers else 1.0) + (out["ce"] if answers else 0.0)
        if "attn" in out:
            loss = loss + cfg.attention_weight * out["attn"]
        if "question" in out:
            loss = loss + cfg.question_weight * out["question"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g_ in opt.param_groups for p in g_["params"]], cfg.grad_clip)
        opt.step()
        if sched is not None:
            sched.step()
        for k, v in {**out, "loss": loss}.items():
            if k in ("correct", "shares"):  # per sample: the family's answer accuracy / evidence attention share
                for s_, c in zip(samples, v.tolist()):
                    if c == c:  # not NaN
                        window.setdefault(f"{'acc' if k == 'correct' else 'attn'}/{s_.id.split('/')[0]}", []).append(
                            float(c)
                        )
            else:
                window.setdefault(k, []).append(float(v.detach()) if isinstance(v, Tensor) else float(v))
        if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
            means = {k: float(np.mean(v)) for k, v in window.items()}
            shown = " ".join(
                f"{k}={means[k]:.3f}"
                for k in (
                    "loss",
                    "ce",
                    "dense",
                    "digit_acc",
                    "digit_acc_ev",
                    "attn_share",
                    "question_acc",
                    "answer_acc",
                )
                if k in means
            )
            fams = " ".join(f"{k[4:]}={v:.2f}" for k, v in sorted(means.items()) if k.startswith("acc/"))
            if any(k.startswith("attn/") for k in means):  # the evidence share of the video attention, per family
                fams += " | attn " + " ".join(
                    f"{k[5:]}={v:.2f}" for k, v in sorted(means.items()) if k.startswith("attn/")
                )
            print(f"[toy-mllm] {name} step {step + 1}/{steps} {shown} {fams} ({time.time() - t0:.0f}s)", flush=True)
            history.append({"stage": name, "step": step + 1, "seconds": round(time.time() - t0, 1), **means})
            window = {}
            if stop is not None and stop(means):
                print(f"[toy-mllm] {name}: target reached at step {step + 1}", flush=True)
                return step + 1
        if on_step is not None:
            on_step(step + 1)
    return steps


def _grid_stage(adapter, head, cfg: ToyConfig, opt, t0: float, history: list[dict]) -> None:
    """cfg.grid_steps dense-label steps on grid_samples (a progress line every cfg.log_every steps)."""
    window: list[float] = []
    for step in range(cfg.grid_steps):
        batch, labels, colours, _ = make_batch(
            grid_samples(cfg, step * cfg.grid_batch_size, cfg.grid_batch_size), cfg, adapter.temporal_patch_size
        )
        out = _forward(adapter, head, batch, labels, colours, answers=False)
        opt.zero_grad(set_to_none=True)
        out["dense"].backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.grad_clip)
        opt.step()
        window.append(float(out["digit_acc"]))
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.grid_steps:
            acc = float(np.mean(window))
            print(
                f"[toy-mllm] grid step {step + 1}/{cfg.grid_steps} digit_acc={acc:.3f} ({time.time() - t0:.0f}s)",
                flush=True,
            )
            history.append({"stage": "grid", "step": step + 1, "seconds": round(time.time() - t0, 1), "digit_acc": acc})
            window = []


def save_state(path: Path, **state) -> None:
    """The training state at a stage end or a joint checkpoint (atomic: a kill leaves the previous one)."""
    from score_lit.durable import atomic_torch_save

    atomic_torch_save(state, path)


class _Stopped(Exception):
    """The joint stage reached train_toy_mllm's stop_after."""


def _load_parts(model: nn.Module, weights: dict, parts: str) -> None:
    """Load `weights` into model: all of them, or (parts="vision") only the vision tower's (model.visual.*)."""
    if parts == "vision":
        weights = {k: v for k, v in weights.items() if k.startswith("model.visual.")}
        missing = [k for k in model.state_dict() if k.startswith("model.visual.") and k not in weights]
        if missing or not weights:
            raise ValueError(f"init_parts=vision: the init weights lack the vision tower ({missing[:3]})")
    model.load_state_dict(weights, strict=parts == "all")


def _load_init(cfg: ToyConfig, model: nn.Module, head: nn.Module) -> dict:
    """Load cfg.init_from's weights into model (and head, from a training state); returns {"n1": the first joint-stage
    stream position not seen there, "stage", "step"} so that the continuation trains on fresh samples."""
    from score_lit.config import ConfigError
    from score_lit.mllm import build_mllm

    src = Path(cfg.init_from)
    if src.is_file():
        state = torch.load(src, map_location="cpu", weights_only=False)
        if state.get("stage") not in ("vision", "joint"):
            raise ConfigError(
                f"init_from={src}: its training state ends in the {state.get('stage')!r} stage; "
                "give one saved after the vision stage (or a saved toy directory)"
            )
        _load_parts(model, state["model"], cfg.init_parts)
        head.load_state_dict(state["head"])
        step = state["step"] if state["stage"] == "joint" else 0
        info = {"n1": state["n1"] + step, "stage": state["stage"], "step": step}
    elif (src / "model.safetensors").is_file():
        _load_parts(model, build_mllm(MLLMConfig(family=cfg.family, path=str(src))).model.state_dict(), cfg.init_parts)
        report = json.loads((src / "accuracy.json").read_text()) if (src / "accuracy.json").is_file() else {}
        info = {
            "n1": report.get("vision_stage_steps", 0) + report.get("joint_steps", 0),
            "stage": "saved",
            "step": report.get("joint_steps", 0),
        }
    else:
        raise ConfigError(
            f"init_from={src}: neither a toy-mllm train_state.pt nor a saved toy directory (model.safetensors)"
        )
    print(
        f"[toy-mllm] starting from {src} ({info['stage']} stage, step {info['step']}); grid and vision stages skipped",
        flush=True,
    )
    return info


def train_toy_mllm(cfg: ToyConfig, resume: bool = False, stop_after: int = 0) -> Path | None:
    """Train, save to cfg.out, evaluate on the test split (accuracy.json beside the model); returns cfg.out.
    resume: continue from <cfg.out>/train_state.pt (written at stage ends and every cfg.checkpoint_every joint
    steps) if it exists; it must come from the same ToyConfig. stop_after: save the training state after this
    joint step and return None (a later --resume continues; another preset can start from it, init_from)."""
    from score_lit.config import ConfigError
    from score_lit.mllm import build_mllm

    state_path = Path(cfg.out) / "train_state.pt"
    state = torch.load(state_path, map_location="cpu", weights_only=False) if resume and state_path.is_file() else None
    if state is not None:
        defaults = asdict(ToyConfig())  # a setting added after the state was saved had its default then
        diff = sorted(k for k in asdict(cfg) if state["config"].get(k, defaults[k]) != asdict(cfg)[k])
        if diff:
            raise ConfigError(
                f"toy-mllm --resume: {state_path} was trained with other settings ({', '.join(diff)}): "
                "give the same preset and flags, or another --out"
            )
        print(f"[toy-mllm] resuming from {state_path}: {state['stage']} stage, step {state['step']}", flush=True)
    torch.manual_seed(cfg.seed)
    t0 = time.time() - (state["seconds"] if state else 0.0)
    model, tokenizer = build_toy_model(cfg)
    sizes = model_sizes(model)
    print(f"[toy-mllm] {cfg.family} model, parameters: {sizes}; families {cfg.family_names()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:  # load the fresh weights through the adapter, as at RL time
        save_hf_dir(model, tokenizer, Path(tmp))
        adapter = build_mllm(MLLMConfig(family=cfg.family, path=tmp))
    model = adapter.model.requires_grad_(True).train()
    head = nn.Linear(adapter.hidden_size, DENSE_CLASSES + len(COLOUR_CLASSES))
    # the question loss's linear probe (training only, like the dense head: not part of the saved model)
    probe = nn.Linear(adapter.hidden_size, model.lm_head.out_features) if cfg.question_weight > 0 else None
    history: list[dict] = []  # the learning curves (progress lines), saved as history.json beside the model
    if state is not None:
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        if probe is not None and state.get("probe") is not None:
            probe.load_state_dict(state["probe"])
        history = state["history"]
    done = state["stage"] if state else None  # the last stage the state holds (finished, or joint in progress)
    init = None
    if state is None and cfg.init_from:
        init = _load_init(cfg, model, head)
        done = "init"  # the grid and vision stages are the init run's

    def checkpoint(stage: str, step: int, opt, sched=None, n1: int = 0) -> None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        save_state(
            state_path,
            stage=stage,
            step=step,
            n1=n1,
            config=asdict(cfg),
            seconds=time.time() - t0,
            model=model.state_dict(),
            head=head.state_dict(),
            probe=None if probe is None else probe.state_dict(),
            opt=opt.state_dict(),
            sched=sched.state_dict() if sched is not None else None,
            history=history,
        )

    # Stage 0 (optional): digit grids; stage 1: the families' videos. Vision tower + merger + dense head.
    vis_params = list(model.model.visual.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(vis_params, lr=cfg.vision_stage_lr, weight_decay=cfg.weight_decay)
    if done is None:
        _grid_stage(adapter, head, cfg, opt, t0, history)
        checkpoint("grid", cfg.grid_steps, opt)
    elif done == "grid":
        opt.load_state_dict(state["opt"])
    if done == "init":
        n1 = init["n1"]
    elif done in (None, "grid"):
        n1 = _run_stage(
            "vision",
            adapter,
            head,
            cfg,
            opt,
            None,
            cfg.vision_steps,
            False,
            0,
            t0,
            history,
            stop=lambda m: m["digit_acc"] >= cfg.dense_target,
        )
        checkpoint("vision", n1, opt, n1=n1)
    else:
        n1 = state["n1"]

    # Stage 2: the whole model on the answers + dense_weight x dense loss.
    vis_ids = {id(p) for p in vis_params}
    llm_params = [p for p in model.parameters() if id(p) not in vis_ids] + (
        [] if probe is None else list(probe.parameters())
    )
    opt = torch.optim.AdamW(
        [{"params": llm_params, "lr": cfg.llm_lr}, {"params": vis_params, "lr": cfg.vision_lr}],
        weight_decay=cfg.weight_decay,
    )

    def schedule(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.joint_steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    start = 0
    if done == "joint":
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = state["step"]

    if stop_after and start >= stop_after:
        print(
            f"[toy-mllm] the state in {state_path} is at joint step {start}, at or past --stop-after {stop_after}: nothing to do",
            flush=True,
        )
        return None

    def on_step(step: int) -> None:
        if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.joint_steps) or step == stop_after:
            checkpoint("joint", step, opt, sched, n1)
        if step == stop_after:
            raise _Stopped

    try:
        _run_stage(
            "joint",
            adapter,
            head,
            cfg,
            opt,
            sched,
            cfg.joint_steps,
            True,
            n1,
            t0,
            history,
            start=start,
            on_step=on_step,
            probe=probe,
        )
    except _Stopped:
        print(
            f"[toy-mllm] stopped after joint step {stop_after} (--stop-after); the state is in {state_path}", flush=True
        )
        return None
    train_seconds = time.time() - t0

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_hf_dir(model.eval().requires_grad_(False), tokenizer, out)
    state_path.unlink(missing_ok=True)  # trained: nothing left to resume
    print(f"[toy-mllm] saved to {out} after {train_seconds:.0f}s of training; evaluating on 'test'", flush=True)
    acc = evaluate(out, cfg)
    ev_names = [f for f in cfg.family_names() if f in EVIDENCE_FAMILIES]
    long_cfg = replace(
        cfg,
        evidence_frames=SETTINGS["long"]["frames"],
        evidence_size=SETTINGS["long"]["size"],
        families=tuple(ev_names),
        eval_per_family=cfg.eval_per_family // 2,
        eval_batch_size=5,
    )
    acc_long = evaluate(out, long_cfg) if ev_names else {}
    report = {
        "families": acc,
        "overall": float(np.mean(list(acc.values()))),
        "n_per_family": cfg.eval_per_family,
        "families_long": acc_long,
        "long_setting": SETTINGS["long"],
        "n_per_family_long": cfg.eval_per_family // 2,
        "seed": cfg.seed,
        "train_seconds": round(train_seconds, 1),
        "vision_stage_steps": n1,
        "joint_steps": cfg.joint_steps,
        "parameters": sizes,
        "config": asdict(cfg),
        "init": init,
    }
    (out / "accuracy.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "history.json").write_text(json.dumps(history) + "\n")
    plot_history(history, out / "learning_curves.png", acc)
    return out
