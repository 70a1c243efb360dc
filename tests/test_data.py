"""The stage-1 generator: deterministic, split-disjoint, and its answer is where it says it is."""

import numpy as np
import pytest
import torch

from score_lit.config import DataConfig, load_config
from score_lit.data.common import collate
from score_lit.data.datamodule import CurriculumDataModule
from score_lit.data.phases import SyntheticVideoQA
from score_lit.toy import assets
from score_lit.toy.synthetic import DIGIT_PX, FAMILIES, distracted, flash, run_lengths, stitched


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_deterministic_per_seed_split_index(family):
    gen = FAMILIES[family]
    a, b = gen(0, "train", 7), gen(0, "train", 7)
    assert a.id == b.id and np.array_equal(a.frames, b.frames) and a.answer == b.answer
    assert not np.array_equal(a.frames, gen(1, "train", 7).frames)
    assert not np.array_equal(a.frames, gen(0, "val", 7).frames)


def test_splits_use_disjoint_digit_instances():
    tr, va, te = (set(assets.digit_indices(s).tolist()) for s in ("train", "val", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert len(tr) + len(va) + len(te) == 1797
    for i in range(20):
        assert stitched(0, "val", i).evidence["digit_index"] in va


def test_runs_are_static_with_cuts_and_even_lengths():
    rng = np.random.default_rng(3)
    for _ in range(50):
        runs = run_lengths(rng, 16, 2, 8)
        assert sum(runs) == 16 and all(r % 2 == 0 and 2 <= r <= 8 for r in runs)
    s = stitched(0, "train", 3, frames=16, size=64)
    assert s.frames.shape == (16, 64, 64, 3) and s.frames.dtype == np.uint8
    same = [np.array_equal(s.frames[i], s.frames[i + 1]) for i in range(15)]
    assert sum(not x for x in same) >= 1  # at least one hard cut
    f0, f1 = s.evidence["frames"]
    assert all(same[f0 : f1 - 1])  # the digit's run is static


def _cell(frame, r, c):
    return frame[r * DIGIT_PX : (r + 1) * DIGIT_PX, c * DIGIT_PX : (c + 1) * DIGIT_PX]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_answer_is_recoverable_from_the_evidence_cell(family):
    images, labels = assets.digits()
    for i in range(10):
        s = FAMILIES[family](0, "train", i, frames=16, size=64)
        f0, f1 = s.evidence["frames"]
        r, c = s.evidence["cell"]
        d = s.evidence["digit_index"]
        assert s.answer == str(labels[d]) and s.answer in s.options
        cell = s.frames[f0, r * DIGIT_PX : (r + 1) * DIGIT_PX, c * DIGIT_PX : (c + 1) * DIGIT_PX].astype(float)
        alpha = np.kron(images[d], np.ones((2, 2)))
        assert np.all(cell[alpha >= 1.0] == 255)  # fully inked pixels are pure white
        # the digit's ink pattern correlates with the cell's brightness
        corr = np.corrcoef(alpha.ravel(), cell.mean(-1).ravel())[0, 1]
        assert corr > 0.8


def _datamodule():
    keys = ["frames=8", "size=32", "batch_size=3", "train_samples=6", "val_samples=3"]
    dm = CurriculumDataModule(load_config([], [f"stage1.data.{k}" for k in keys]))
    dm.setup("fit")
    return dm


def test_collate_and_datamodule():
    dm = _datamodule()
    batch = next(iter(dm.train_dataloader()))
    assert batch.frames.shape == (3, 8, 3, 32, 32) and batch.frames.dtype == torch.uint8
    for j in range(3):
        assert batch.options[j][batch.answer_index[j]] == batch.answers[j]
    assert next(iter(_datamodule().train_dataloader())).ids == batch.ids  # same seed -> same order
    assert len(next(iter(dm.val_dataloader())).ids) == 3
    s = [stitched(0, "val", i, frames=8, size=32) for i in range(2)]
    vb = collate(s)
    assert torch.equal(vb.frames[0], torch.from_numpy(s[0].frames).permute(0, 3, 1, 2))


def test_flash_digit_is_visible_in_exactly_one_temporal_unit():
    for i in range(10):
        s = flash(0, "test", i)
        f0, f1 = s.evidence["frames"]
        assert f1 - f0 == 2 and f0 % 2 == 0  # one temporal unit (2 frames), on a unit border
        outside = [f for f in range(16) if not f0 <= f < f1]
        assert all(np.array_equal(s.frames[f], s.frames[outside[0]]) for f in outside)  # static elsewhere
        assert not np.array_equal(s.frames[f0], s.frames[outside[0]])


def test_distracted_changes_elsewhere_never_carry_the_digit():
    starts = set()
    for i in range(12):
        s = distracted(0, "train", i)
        (r, c), others = s.evidence["cell"], s.evidence["distractor_cells"]
        f0, f1 = s.evidence["frames"]
        starts.add(f0)
        assert f1 == 16 and (r, c) not in others
        # the digit cell is static once the digit is there; every distractor cell changes every unit
        assert all(np.array_equal(_cell(s.frames[f], r, c), _cell(s.frames[f0], r, c)) for f in range(f0, 16))
        for rr, cc in others:
            assert all(
                not np.array_equal(_cell(s.frames[2 * u], rr, cc), _cell(s.frames[2 * u + 2], rr, cc)) for u in range(7)
            )
        # outside the digit and distractor cells, the scene never changes
        m = np.ones((64, 64), bool)
        for rr, cc in [(r, c), *others]:
            m[rr * DIGIT_PX : (rr + 1) * DIGIT_PX, cc * DIGIT_PX : (cc + 1) * DIGIT_PX] = False
        assert all(np.array_equal(s.frames[f][m], s.frames[0][m]) for f in range(16))
    assert 0 in starts and len(starts) > 1  # both "sits still from frame 0" and "appears later" occur


def test_families_interleave_by_index():
    cfg = DataConfig(families=["flash", "distracted"], frames=8, size=32, batch_size=4, train_samples=8, val_samples=4)
    ds = SyntheticVideoQA(cfg, "train", cfg.train_samples)
    ids = [ds[i].id for i in range(4)]
    assert ids == ["flash/train/0/0", "distracted/train/0/0", "flash/train/0/1", "distracted/train/0/1"]


def test_distractor_count_is_config():
    for k in (1, 3):
        ds = SyntheticVideoQA(DataConfig(families=["distracted"], distractors=k), "train", 2)
        assert len(ds[0].evidence["distractor_cells"]) == k
