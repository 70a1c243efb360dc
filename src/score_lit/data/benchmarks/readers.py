"""Readers of MVBench, MLVU, LongVideoBench, EgoSchema and NExT-QA (registered in score_lit.data.benchmarks,
whose docstring has the common rules). Each docstring names the files it expects, the lmms-eval code its
prompt follows, and what it does not handle."""

from __future__ import annotations

import json
import os

from score_lit.data.benchmarks.records import (
    ANSWER_DIRECTLY,
    Benchmark,
    Row,
    answer_index,
    collect,
    find_files,
    first_existing,
    read_all,
    record,
    table,
)
from score_lit.data.common import Problem, option_letter
from score_lit.data.video_qa import VideoQARecord

# ------------------------------------------------------------------------------------------------
# MVBench

# task -> (folder of the HF `video` revision that lmms-eval reads, folder of the main-branch `video/` tree, has start/end)
MVBENCH_TASKS = {
    "action_sequence": ("star/Charades_segment", "star/Charades_v1_480", True),
    "action_prediction": ("star/Charades_segment", "star/Charades_v1_480", True),
    "action_antonym": ("ssv2_video_mp4", "ssv2_video", False),
    "fine_grained_action": ("Moments_in_Time_Raw/videos", "Moments_in_Time_Raw/videos", False),
    "unexpected_action": ("FunQA_test/test", "FunQA_test/test", False),
    "object_existence": ("clevrer/video_validation", "clevrer/video_validation", False),
    "object_interaction": ("star/Charades_segment", "star/Charades_v1_480", True),
    "object_shuffle": ("perception/videos", "perception/videos", False),
    "moving_direction": ("clevrer/video_validation", "clevrer/video_validation", False),
    "action_localization": ("sta/sta_video_segment", "sta/sta_video", True),
    "scene_transition": ("scene_qa/video", "scene_qa/video", False),
    "action_count": ("perception/videos", "perception/videos", False),
    "moving_count": ("clevrer/video_validation", "clevrer/video_validation", False),
    "moving_attribute": ("clevrer/video_validation", "clevrer/video_validation", False),
    "state_change": ("perception/videos", "perception/videos", False),
    "fine_grained_pose": ("nturgbd_convert", "nturgbd", False),
    "character_order": ("perception/videos", "perception/videos", False),
    "egocentric_navigation": ("vlnqa", "vlnqa", False),
    "episodic_reasoning": ("tvqa/video_fps3_hq_segment", "tvqa/frames_fps3_hq", True),
    "counterfactual_inference": ("clevrer/video_validation", "clevrer/video_validation", False),
}
MVBENCH_POST = "Only give the best option.\n"
MVBENCH_PROMPT = "Question:{question}\\nOption:\\n(A) {c0}\\n(B) {c1}\\n...Only give the best option.\\n"


def load_mvbench(root: str, limit: int | None = None, split: str | None = None) -> Benchmark:
    """MVBench (OpenGVLab/MVBench) as lmms-eval's `mvbench` group reads it; `split` = one task name, or
    several comma-separated (default: all 20, in MVBENCH_TASKS order).

    Files: `<root>/json/<task>.json` (a JSON list of {video, question, candidates, answer (the candidate's
    text)}, some tasks with start/end seconds). Videos: the HF `video` revision that lmms-eval uses
    (`_default_template_yaml`: revision video; `utils.DATA_LIST`): `<root>/<folder>/<video>` with the folder
    of MVBENCH_TASKS[task][0]; when absent there, the main-branch tree `<root>/video/<folder>/<video>` of the
    MVBench authors' data_list (Ask-Anything `video_chat2/mvbench.ipynb`). start/end: the `video` revision
    ships the bounded tasks already cut (`*_segment` folders; lmms-eval ignores start/end), so the bounds are
    applied only to a video found in the uncut main-branch tree. Not handled: the main branch's episodic
    reasoning as folders of frames (`tvqa/frames_fps3_hq/<video>/`: a Problem, not a file).
    Prompt (utils.mvbench_doc_to_text, post_prompt of every mvbench_<task>.yaml): MVBENCH_PROMPT. Family = task.
    """
    tasks = [t.strip() for t in split.split(",")] if split else list(MVBENCH_TASKS)
    unknown = [t for t in tasks if t not in MVBENCH_TASKS]
    if unknown:
        raise ValueError(f"unknown MVBench task(s) {unknown}: use some of {list(MVBENCH_TASKS)}")
    rows, problems = [], []
    for t in tasks:
        path = os.path.join(root, "json", f"{t}.json")
        if not os.path.isfile(path):
            if split:
                raise FileNotFoundError(f"MVBench: no {path}")
            problems.append(Problem(path, None, "annotation file of this task not found; task left out"))
            continue
        got, bad = table(path)
        rows += [(path, line, obj) for line, obj in got]
        problems += bad
    if not rows and not any(p.line is not None for p in problems):
        raise FileNotFoundError(f"MVBench: no json/<task>.json under {root}")

    def build(source: str, line: int, d: dict) -> VideoQARecord:
        task = os.path.splitext(os.path.basename(source))[0]
        seg, full, bounded = MVBENCH_TASKS[task]
        video = first_existing([os.path.join(root, seg, d["video"]), os.path.join(root, "video", full, d["video"])])
        if os.path.isdir(video):
            raise ValueError(
                f"{video} is a folder of frames, not a video file (use the HF `video` revision's mp4 segments)"
            )
        start = end = None
        if bounded and not video.startswith(os.path.join(root, seg) + os.sep) and d.get("start") is not None:
            start, end = float(d["start"]), float(d["end"])
            if not 0 <= start < end:
                raise ValueError(f"start {start:g} s / end {end:g} s: not a clip window")
        cands = [str(c) for c in d["candidates"]]
        opts = "".join(f"({option_letter(i)}) {c}\n" for i, c in enumerate(cands))
        q = f"Question:{d['question']}\nOption:\n{opts}{MVBENCH_POST}"
        return record(
            f"{task}/{line}",
            video,
            q,
            len(cands),
            answer_index(str(d["answer"]), cands),
            task,
            source,
            line,
            {"task": task},
            start,
            end,
        )

    return Benchmark("mvbench", *collect(rows, build, limit, problems), "mvbench_accuracy", MVBENCH_PROMPT, "mvbench")


# ------------------------------------------------------------------------------------------------
# MLVU (dev)

MLVU_GENERATION = ("sub_scene", "summary")  # open-ended tasks of the dev set: no candidates, not read
MLVU_PROMPT = (
    "\\nQuestion: {question}\\nOptions:\\n(A) {c0}\\n(B) {c1}\\n...\\nOnly give the best option.\\n\\nBest option: ("
)


def load_mlvu(root: str, limit: int | None = None, split: str | None = None) -> Benchmark:
    """MLVU dev, multiple-choice tasks (`split` must be None or "dev": the test set's answers are not public).

    Files (MVLU/MLVU on HF, the authors' layout): `<root>/json/<n>_<type>.json` (also under `<root>/MLVU/`),
    JSON lists of {video, duration, question, candidates, answer (the candidate's text), question_type}; videos
    `<root>/video/<type>/<video>` with <type> from the file name (1_plotQA -> plotQA, 2_needle -> needle, as
    in the authors' choice_bench.py data_list). 8_sub_scene and 9_summary (open-ended) are skipped.
    Prompt: lmms-eval's utils.mlvu_doc_to_text wraps the question as "\\n" + question + "\\nOnly give the best
    option.\\n" + "\\n" + "Best option: (" (the answer letter is the next token). lmms-eval's mlvu_dev reads
    sy1998/MLVU_dev, whose `question` already carries the options; their exact form was not verifiable, so the
    block is written as the MLVU authors' qa_template ("Question: q\\nOptions:\\n(A) c..." stripped):
    MLVU_PROMPT. Not handled: that parquet export. Family = question_type (e.g. findNeedle, plotQA).
    lmms-eval's score (mlvu_aggregate_results_dev) is the mean of the per-type accuracies.
    """
    if split not in (None, "dev"):
        raise ValueError(f"MLVU split {split!r}: only 'dev' has public answers")
    base = os.path.join(root, "MLVU") if os.path.isdir(os.path.join(root, "MLVU", "json")) else root
    files = find_files(base, ["json/*.json"], "MLVU dev")
    files = [f for f in files if not f.endswith(tuple(g + ".json" for g in MLVU_GENERATION))]
    rows, problems = read_all(files)

    def build(source: str, line: int, d: dict) -> VideoQARecord:
        stem = os.path.splitext(os.path.basename(source))[0]
        folder = stem.split("_", 1)[1] if "_" in stem and stem.split("_", 1)[0].isdigit() else stem
        cands = [str(c) for c in d["candidates"]]
        body = f"Question: {d['question']}\nOptions:\n" + "".join(
            f"({option_letter(i)}) {c}\n" for i, c in enumerate(cands)
        )
        q = "\n" + body.rstrip() + "\nOnly give the best option.\n" + "\n" + "Best option: ("
        meta = {"duration": d.get("duration"), "question_type": d.get("question_type", folder)}
        return record(
            f"{stem}/{line}",
            os.path.join(base, "video", folder, d["video"]),
            q,
            len(cands),
            answer_index(str(d["answer"]), cands),
            d.get("question_type", folder),
            source,
            line,
            meta,
        )

    return Benchmark("mlvu", *collect(rows, build, limit, problems), "mlvu_percetion_score", MLVU_PROMPT, "mlvu_dev")


# ------------------------------------------------------------------------------------------------
# LongVideoBench (validation)

LVB_PROMPT = f"{{question}}\\nA. {{c0}}\\nB. {{c1}}\\n...\\n{ANSWER_DIRECTLY}\\n"


def load_longvideobench(root: str, limit: int | None = None, split: str | None = None) -> Benchmark:
    """LongVideoBench validation (`split` None / "val" / "validation"; the test set has no answers).

    Files (longvideobench/LongVideoBench on HF): `<root>/lvb_val.json` (a JSON list of {id, video_path,
    question, candidates, correct_choice (0-based), duration_group, question_category, duration, ...}), or the
    parquet `<root>/validation-*.parquet` that lmms-eval loads (option0..option4, "N/A" for absent options);
    videos `<root>/videos/<video_path>` (utils.longvideobench_doc_to_visual_v, video_subdir "videos/").
    Prompt (utils.longvideobench_doc_to_text, longvideobench_val_v.yaml post_prompt): LVB_PROMPT.
    Family = duration_group (15, 60, 600, 3600 s); meta keeps question_category. Not handled: the interleaved
    subtitles of longvideobench_val_i.
    """
    if split not in (None, "val", "validation"):
        raise ValueError(f"LongVideoBench split {split!r}: only the validation set has public answers")
    files = find_files(root, ["lvb_val.json", "validation-*.parquet", "data/validation-*.parquet"], "LongVideoBench")
    rows, problems = read_all(files)

    def build(source: str, line: int, d: dict) -> VideoQARecord:
        if "candidates" in d:
            cands = [str(c) for c in d["candidates"]]
        else:
            cands = [str(d[f"option{i}"]) for i in range(5) if d.get(f"option{i}") not in (None, "N/A")]
        q = (
            f"{d['question']}\n"
            + "\n".join(f"{option_letter(i)}. {c}" for i, c in enumerate(cands))
            + f"\n{ANSWER_DIRECTLY}\n"
        )
        meta = {"question_category": d.get("question_category"), "duration": d.get("duration")}
        return record(
            d["id"],
            os.path.join(root, "videos", d["video_path"]),
            q,
            len(cands),
            int(d["correct_choice"]),
            d["duration_group"],
            source,
            line,
            meta,
        )

    return Benchmark(
        "longvideobench", *collect(rows, build, limit, problems), "lvb_acc", LVB_PROMPT, "longvideobench_val_v"
    )


# ------------------------------------------------------------------------------------------------
# EgoSchema (the 500-question subset with public answers)

EGOSCHEMA_PROMPT = f"{{question}}\\nA. {{option 0}}\\nB. {{option 1}}\\n...\\nE. {{option 4}}\\n{ANSWER_DIRECTLY}"


def load_egoschema(root: str, limit: int | None = None, split: str | None = None) -> Benchmark:
    """EgoSchema subset (`split` None / "subset": the full set's answers are hidden behind a server).

    Files (the authors' GitHub release): `<root>/questions.json` (a JSON list of {q_uid, question, "option 0"
    .. "option 4"}) and `<root>/subset_answers.json` ({q_uid: 0-based answer}); only the questions with an
    answer are read, in questions.json order. Or lmms-lab/egoschema as lmms-eval reads it:
    `<root>/Subset/test-*.parquet` with {question_idx, question, video_idx, option ["A. ...", ...], answer
    ("0".."4")}. Videos `<root>/videos/<q_uid>.mp4` (then .MP4; utils.egoschema_doc_to_visual).
    Prompt (utils.egoschema_doc_to_text: each option on its own line, then its fixed post_prompt): EGOSCHEMA_PROMPT.
    Family = "all".
    """
    if split not in (None, "subset"):
        raise ValueError(f"EgoSchema split {split!r}: only the 'subset' has public answers")
    qfile, afile = os.path.join(root, "questions.json"), os.path.join(root, "subset_answers.json")
    if os.path.isfile(qfile) and os.path.isfile(afile):
        answers = json.load(open(afile, encoding="utf-8"))
        got, problems = table(qfile)
        rows: list[Row] = [(qfile, line, obj) for line, obj in got if obj.get("q_uid") in answers]
    else:
        what = "EgoSchema (questions.json + subset_answers.json)"
        rows, problems = read_all(find_files(root, ["Subset/test-*.parquet", "Subset/*.json*"], what))
        answers = None

    def build(source: str, line: int, d: dict) -> VideoQARecord:
        if answers is not None:
            uid, answer = d["q_uid"], int(answers[d["q_uid"]])
            opts = [f"{option_letter(i)}. {d[f'option {i}']}" for i in range(5) if f"option {i}" in d]
        else:
            uid, answer, opts = d["video_idx"], int(d["answer"]), [str(o) for o in d["option"]]
        q = str(d["question"]) + "".join("\n" + o for o in opts) + f"\n{ANSWER_DIRECTLY}"
        video = first_existing([os.path.join(root, "videos", f"{uid}.mp4"), os.path.join(root, "videos", f"{uid}.MP4")])
        return record(uid, video, q, len(opts), answer, "all", source, line)

    return Benchmark("egoschema", *collect(rows, build, limit, problems), "score", EGOSCHEMA_PROMPT, "egoschema_subset")


# ------------------------------------------------------------------------------------------------
# NExT-QA (multiple choice)

NEXTQA_PROMPT = "{question}\\nA. {a0}\\nB. {a1}\\nC. {a2}\\nD. {a3}\\nE. {a4}   (no post-prompt, as nextqa_mc_test)"


def load_nextqa(root: str, limit: int | None = None, split: str | None = None) -> Benchmark:
    """NExT-QA multiple choice; `split` "test" (lmms-eval's nextqa_mc_test; the default when present) or "val".

    Files: `<root>/MC/<split>.csv`, `<root>/<split>.csv` or `<root>/nextqa/<split>.csv` (the authors' csv:
    video, frame_count, width, height, question, answer (0-based), qid, type, a0..a4), or lmms-eval/NExTQA's
    `<root>/MC/<split>-*.parquet` (same fields). Videos: `<root>/NExTVideo/<path>.mp4` where <path> is
    map_vid_vidorid.json[video] when that file is there (`<root>/`, `<root>/nextqa/` or `<root>/NExTVideo/`:
    the authors' <folder>/<id> tree), else the video id itself (the flat folder lmms-eval's get_video reads).
    Prompt (utils.nextqa_doc_to_text_mc; nextqa_mc_test.yaml sets no post_prompt): NEXTQA_PROMPT.
    Family = type code (CW, CH, TN, TC, TP, DL, DC, DO, ...); meta["group"] = its first letter (C/T/D).
    Not handled: the open-ended tasks (nextqa_oe_*, WUPS).
    """
    names = [split] if split else ["test", "val"]
    pats = [p for s in names for p in (f"MC/{s}.csv", f"{s}.csv", f"nextqa/{s}.csv", f"MC/{s}-*.parquet")]
    rows, problems = read_all(find_files(root, pats, "NExT-QA multiple choice"))
    mapping = {}
    for m in (
        os.path.join(root, "map_vid_vidorid.json"),
        os.path.join(root, "nextqa", "map_vid_vidorid.json"),
        os.path.join(root, "NExTVideo", "map_vid_vidorid.json"),
    ):
        if os.path.isfile(m):
            mapping = {str(k): str(v) for k, v in json.load(open(m, encoding="utf-8")).items()}
            break

    def build(source: str, line: int, d: dict) -> VideoQARecord:
        vid = str(d["video"])
        opts = [str(d[f"a{i}"]).strip() for i in range(5)]
        q = str(d["question"]).strip() + "".join(f"\n{option_letter(i)}. {a}" for i, a in enumerate(opts))
        video = os.path.join(root, "NExTVideo", mapping.get(vid, vid) + ".mp4")
        qtype = str(d["type"])
        return record(
            f"{vid}_{d['qid']}", video, q, len(opts), int(d["answer"]), qtype, source, line, {"group": qtype[:1]}
        )

    return Benchmark("nextqa", *collect(rows, build, limit, problems), "exact_match", NEXTQA_PROMPT, "nextqa_mc_test")
