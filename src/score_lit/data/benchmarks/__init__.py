"""Evaluation benchmarks read from local files in their published layouts, as `VideoQARecord`s that
`VideoQADataset` decodes like any other video QA.

    bench = load_benchmark("mvbench", "/data/MVBench", limit=200)
    bench.records, bench.problems, bench.metric, bench.prompt

Every real benchmark is multiple choice and is scored by one forward pass: the options are written into
the question the way lmms-eval writes them for that task (its `doc_to_text` with the `default`
`lmms_eval_specific_kwargs`), `record.options` are the letters ["A", "B", ...] and `record.answer` the
correct letter, so accuracy = argmax over the letters' first-token logits. lmms-eval instead generates and
parses the letter; the prompt is the same, the read-out differs (documented deviation: no parsing failures,
no random fallback as in LongVideoBench's parser). `meta["family"]` is the category reported per family.

| name           | lmms-eval task          | metric (as lmms-eval prints it) | family            |
| toy            | -                       | accuracy                        | the row's family  |
| evidence       | -                       | accuracy                        | the row's family  |
| videomme       | videomme                | videomme_perception_score       | duration          |
| mvbench        | mvbench_<task> (group)  | mvbench_accuracy                | task name         |
| mlvu           | mlvu_dev                | mlvu_percetion_score (sic)      | question_type     |
| longvideobench | longvideobench_val_v    | lvb_acc                         | duration_group    |
| egoschema      | egoschema_subset        | score                           | "all"             |
| nextqa         | nextqa_mc_test          | exact_match                     | type (CW, TN, ..) |

Sources: EvolvingLMMs-Lab/lmms-eval `lmms_eval/tasks/<task>/utils.py` and its yaml files (dataset_path,
doc_to_visual, doc_to_text, metric_list); each reader's docstring
says exactly which files it expects. Aggregation differs per task in lmms-eval (mlvu_dev reports the MEAN
OF PER-TYPE accuracies; the others the accuracy over all questions): callers report both from `family`.

Common rules: relative video paths resolve under `root`; a missing video, a row without a required field or
an answer outside the options becomes a `Problem` (never an exception) and the row is left out; a missing
annotation file is a FileNotFoundError naming what was looked for. `limit` keeps the first `limit` rows in
the published order (before the file checks: a missing video among them is reported, not replaced).
Parquet files are read with pyarrow (installed in this environment); a json/jsonl export of the same
fields is accepted wherever a parquet file is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from score_lit.data.benchmarks.readers import load_egoschema, load_longvideobench, load_mlvu, load_mvbench, load_nextqa
from score_lit.data.benchmarks.records import (
    ANSWER_DIRECTLY,
    Benchmark,
    collect,
    find_files,
    first_existing,
    letters,
    read_all,
    record,
)
from score_lit.data.common import option_letter
from score_lit.data.video_qa import VideoQARecord, read_video_qa

__all__ = ["BENCHMARKS", "Benchmark", "load_benchmark"]

# ------------------------------------------------------------------------------------------------
# toy: the project's own export (score_lit.toy.export)

TOY_PROMPT = (
    "the row's question as-is (e.g. 'which digit appeared ?'), NO option list: the toy model was trained to "
    "answer with the digit token directly; options = the digits '0'..'9', answer = the digit"
)


def load_toy(root: str, limit: int | None = None, split: str | None = None) -> Benchmark:
    """`root` = a folder written by export_split (reads `<root>/<split>.jsonl`, split default "test") or the
    jsonl path itself. Rows {id, video, question, options, answer, family, evidence, fps} through read_video_qa."""
    path = root if os.path.isfile(root) else os.path.join(root, f"{split or 'test'}.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"toy benchmark: no {path} (write it with `python -m score_lit export-split --out DIR`)"
        )
    records, problems = read_video_qa(path)
    records = records[:limit] if limit is not None else records
    for r in records:
        r.meta.setdefault("family", "all")
    return Benchmark("toy", records, problems, "accuracy", TOY_PROMPT)


def load_evidence(root: str, limit: int | None = None, split: str | None = None) -> Benchmark:
    """The evidence benchmark (score_lit.toy.evidence), as exported by `export-split --benchmark evidence`:
    read like `toy`; its manifest's family version and setting name the benchmark in every result row
    ("evidence-v1", "evidence-v1-long"), so numbers of two versions are never mixed up."""
    import json
    from pathlib import Path

    folder = root if os.path.isdir(root) else os.path.dirname(root)
    man_path = os.path.join(folder, "manifest.json")
    if not os.path.isfile(man_path):
        raise FileNotFoundError(
            f"evidence benchmark: no {man_path} (write it with `python -m score_lit export-split --benchmark evidence --out DIR`)"
        )
    man = json.loads(Path(man_path).read_text())
    if man.get("benchmark") != "evidence":
        raise FileNotFoundError(
            f"{man_path} is not an evidence-benchmark export (benchmark={man.get('benchmark', 'toy')!r}); use eval.benchmark=toy"
        )
    b = load_toy(root, limit, split)
    suffix = "" if man.get("setting") in ("default", None) else f"-{man['setting']}"
    b.name = f"evidence-v{man['version']}{suffix}"
    from score_lit.toy.evidence import VERSION

    if man.get("version") != VERSION:  # allowed (to reproduce older numbers), but never by accident
        print(
            f"note: {folder} is version {man.get('version')} of the evidence benchmark, the current one is {VERSION} "
            f"(src/score_lit/toy/evidence.py says what changed); delete it and run `make export-evidence` for the current one",
            file=sys.stderr,
            flush=True,
        )
    return b


# ------------------------------------------------------------------------------------------------
# Video-MME

VIDEOMME_PRE = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
VIDEOMME_PROMPT = f"{VIDEOMME_PRE}\\n{{question}}\\n{{options 'A. ...' one a line}}\\n\\n{ANSWER_DIRECTLY}"


def load_videomme(root: str, limit: int | None = None, split: str | None = None) -> Benchmark:
    """Video-MME as lmms-eval's `videomme` task reads lmms-lab/Video-MME (no subtitles).

    Files: `<root>/videomme/test-*.parquet` (the HF layout; also `<root>/test-*.parquet`, or a json/jsonl export
    `<root>/videomme/test.json[l]` / `<root>/test.json[l]`) with rows {video_id, duration (short/medium/long),
    domain, sub_category, videoID, question_id, task_type, question, options ["A. ...", ...], answer "A"};
    videos `<root>/data/<videoID>.mp4` (then .MP4, .mkv, as lmms-eval's videomme_doc_to_visual tries).
    Prompt (utils.videomme_doc_to_text, default post_prompt "\\nAnswer with the option's letter from the given
    choices directly." of videomme.yaml): VIDEOMME_PROMPT, the options written as given. Note that this
    no-subtitle prompt of lmms-eval does say "and the subtitles". Family = duration; meta keeps task_type,
    domain, sub_category, videoID. Not handled: subtitles (`subtitle/<videoID>.srt`, the w_subtitle tasks).
    """
    s = split or "test"
    files = find_files(
        root, [f"videomme/{s}-*.parquet", f"{s}-*.parquet", f"videomme/{s}.json*", f"{s}.json*"], "Video-MME"
    )
    rows, problems = read_all(files)

    def build(source: str, line: int, d: dict) -> VideoQARecord:
        opts = [str(o).strip() for o in d["options"]]
        bad = [o for i, o in enumerate(opts) if not o.startswith(f"{option_letter(i)}.")]
        if bad:
            raise ValueError(f"options must read 'A. ...', 'B. ...'; got {bad[0]!r}")
        answer = str(d["answer"]).strip().upper()
        if answer not in letters(len(opts)):
            raise ValueError(f"answer {answer!r} is not one of the letters {letters(len(opts))}")
        base = os.path.join(root, "data", f"{d['videoID']}")
        video = first_existing([base + ".mp4", base + ".MP4", base + ".mkv"])
        q = f"{VIDEOMME_PRE}\n{d['question']}\n" + "\n".join(opts) + f"\n\n{ANSWER_DIRECTLY}"
        meta = {k: d.get(k) for k in ("task_type", "domain", "sub_category", "videoID", "video_id")}
        return record(d["question_id"], video, q, len(opts), ord(answer) - ord("A"), d["duration"], source, line, meta)

    return Benchmark(
        "videomme", *collect(rows, build, limit, problems), "videomme_perception_score", VIDEOMME_PROMPT, "videomme"
    )


BENCHMARKS: dict[str, Callable[..., Benchmark]] = {
    "toy": load_toy,
    "evidence": load_evidence,
    "videomme": load_videomme,
    "mvbench": load_mvbench,
    "mlvu": load_mlvu,
    "longvideobench": load_longvideobench,
    "egoschema": load_egoschema,
    "nextqa": load_nextqa,
}


def load_benchmark(name: str, root: str, limit: int | None = None, split: str | None = None) -> Benchmark:
    """The benchmark `name` from its files under `root` (see each reader for the layout it expects)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}: use one of {sorted(BENCHMARKS)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit={limit} must be >= 0 (or None for all)")
    return BENCHMARKS[name](str(root), limit=limit, split=split)
