"""The GPU check's report (score_lit.perf.gpu_check runs the parts): the bench's results summarised per
(frames, ratio), the paper's speed targets checked at r = 0.1, and gpu_check.md rendered from gpu_check.json.
"""

from __future__ import annotations

TARGETS = {"share_of_ideal_at_0.1": 0.9, "policy_share_at_0.1": 0.005}  # at the two largest frame counts


def summarise(bench: dict) -> list[dict]:
    """One row per (frames, ratio): the speedups, the shares, `model` (vision + policy + prefill) from the medians,
    and the bench's time to first token (`ttft_ms` = decode + model and its speedup over vanilla in the same run, as
    score_lit.perf.bench computed them)."""
    rows = []
    for res in bench["results"]:
        for r in res["ratios"]:
            model = r["vision_ms"] + r["policy_ms"] + r["prefill_ms"]
            rows.append(
                {
                    "frames": res["frames"],
                    "visual_tokens": res["visual_tokens"],
                    "ratio": r["retention_ratio"],
                    "kept": r["kept_tokens"],
                    "decode_ms": r["decode_ms"],
                    "vision_ms": r["vision_ms"],
                    "policy_ms": r["policy_ms"],
                    "prefill_ms": r["prefill_ms"],
                    "model_ms": model,
                    "ttft_ms": r["ttft_ms"],
                    "ttft_speedup": r["ttft_speedup"],
                    "prefill_speedup": r["prefill_speedup"],
                    "ideal_speedup": r["ideal_speedup"],
                    "share_of_ideal": r["share_of_ideal"],
                    "policy_share": r["policy_ms"] / model,
                }
            )
    return rows


def check_targets(rows: list[dict]) -> dict:
    """The check's targets at r = 0.1 for the two largest frame counts: share of ideal >= 0.9, policy < 0.5%."""
    frames = sorted({r["frames"] for r in rows})[-2:]
    out = {}
    for r in rows:
        if r["frames"] in frames and abs(r["ratio"] - 0.1) < 1e-9:
            out[f"{r['frames']}f"] = {
                "share_of_ideal": r["share_of_ideal"],
                "share_of_ideal_ok": r["share_of_ideal"] >= TARGETS["share_of_ideal_at_0.1"],
                "policy_share": r["policy_share"],
                "policy_share_ok": r["policy_share"] < TARGETS["policy_share_at_0.1"],
            }
    return out


def markdown(doc: dict) -> str:
    """The report: environment, what is timed, per architecture the speedup table and the targets, the profile,
    the train step, and every part that failed or was skipped."""
    from score_lit.perf.step import table as step_table

    env = doc["environment"]
    gpu = (
        f"CUDA {env['cuda']}, {env['gpu_memory_gib']:.0f} GiB"
        if env.get("cuda") and env.get("gpu_memory_gib")
        else "no CUDA"
    )
    lines = [
        f"# GPU check ({doc['mode']}): {env['device_name']}",
        "",
        f"torch {env['torch']} ({gpu}), transformers {env['transformers']}, lightning {env['lightning']}, "
        f"Python {env['python']}; attention: {'FlashAttention 2' if env['flash_attention_2'] else 'SDPA'}; "
        f"{doc['total_s']:.0f} s in all.",
        "",
        f"What is timed: {doc['what_is_timed']}",
        "",
    ]
    for name, part in doc["parts"].items():
        if part["status"] != "ok":
            lines += [f"## {name}: {part['status'].upper()}", "", f"    {part.get('error') or part.get('why')}", ""]
            continue
        if name.startswith("prefill_"):
            lines += [
                f"## {name}",
                "",
                "| frames | visual tokens | ratio | kept | decode ms | vision ms | policy ms | prefill ms | model ms "
                "| TTFT ms | TTFT speedup | prefill speedup | FLOP-ideal | share of ideal | policy share of model |",
                "|" + "---|" * 15,
            ]
            for r in part["summary"]:
                lines.append(
                    f"| {r['frames']} | {r['visual_tokens']} | {r['ratio']:.2f} | {r['kept']} | {r['decode_ms']:.1f} "
                    f"| {r['vision_ms']:.1f} | {r['policy_ms']:.2f} | {r['prefill_ms']:.1f} | {r['model_ms']:.1f} "
                    f"| {r['ttft_ms']:.1f} | {r['ttft_speedup']:.2f}x | {r['prefill_speedup']:.2f}x "
                    f"| {r['ideal_speedup']:.2f}x | {100 * r['share_of_ideal']:.0f}% | {100 * r['policy_share']:.2f}% |"
                )
            lines.append("")
            for f, t in part["targets"].items():
                lines.append(
                    f"- at 0.10, {f}: share of ideal {100 * t['share_of_ideal']:.0f}% "
                    f"({'meets' if t['share_of_ideal_ok'] else 'MISSES'} >= 90%), policy {100 * t['policy_share']:.2f}% "
                    f"of model ({'meets' if t['policy_share_ok'] else 'MISSES'} < 0.5%)"
                )
            lines.append("")
        elif name.startswith("profile_"):
            lines += [f"## {name}: top operators at {part['frames']} frames", ""]
            for ratio, ops in part["top_ops"].items():
                lines += [f"ratio {ratio}:", "", "| op | self ms | share | calls |", "|---|---|---|---|"]
                lines += [f"| {o['op']} | {o['self_ms']:.2f} | {100 * o['share']:.1f}% | {o['calls']} |" for o in ops]
                lines.append("")
        elif name.startswith("train_step_"):
            s = part["settings"]
            lines += [
                f"## {name}",
                "",
                f"policy {s['policy']}, sampler {s['sampler']}, estimator {s['estimator']}, "
                f"precision {s['precision']}; medians of {part['config']['repeats']} steps after {part['config']['warmup']}.",
                "",
                step_table([part]),
                "",
            ]
    return "\n".join(lines) + "\n"
