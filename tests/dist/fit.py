"""One multi-process fit for tests/test_distributed.py: python tests/dist/fit.py OUT [key=value ...].

Lightning's launcher re-executes this script once per extra rank (with LOCAL_RANK etc. set), so it
builds the config from argv alone and calls score_lit.training.fit.fit, the project's own entry point. Each
rank writes OUT/rank<r>.json (the sample ids it trained per step, what ZeRO did to a frozen weight
and to the optimizer state) and OUT/policy_init_rank<r>.pt, OUT/policy_rank<r>.pt (its policy weights
before and after training).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from score_lit.config import load_config
from score_lit.data.encode import encode
from score_lit.training.module import ScoreModule
from score_lit.mllm import build_mllm
from score_lit.training.fit import fit

CONSTRUCTED: dict = {}  # the frozen weights right after ScoreModule.configure_model built them (if it did)


def _recording_configure_model(self):
    built = self.mllm is None
    _configure_model(self)
    if built:  # before DeepSpeed's initialize: what zero.Init made of each weight as it was created
        status = [zero_status(p) for p in self.frozen.parameters()]
        CONSTRUCTED.update(n=len(status), zero=sum(s["zero"] for s in status), max_now=max(s["now"] for s in status),
                           partitioned=sum(s["zero"] and s["local"] < s["numel"] for s in status))


_configure_model = ScoreModule.configure_model
ScoreModule.configure_model = _recording_configure_model


def zero_status(p: torch.nn.Parameter) -> dict:
    """Where a parameter lives: full numel, this rank's stored partition, and what is materialised now."""
    if not hasattr(p, "ds_numel"):
        return {"zero": False, "numel": p.numel(), "local": p.numel(), "now": p.numel()}
    return {"zero": True, "numel": p.ds_numel, "local": p.ds_tensor.numel(), "now": p.numel(),
            "status": p.ds_status.name, "persist": bool(p.ds_persist)}


class Recorder(Callback):
    def __init__(self, out: Path):
        self.out, self.rec = out, {"ids": {}, "frozen": {}, "policy": {}}

    def on_train_start(self, trainer, module):  # after the strategy's setup (and keep_whole under ZeRO-3)
        state = {k: v.detach().clone() for k, v in module.policy.state_dict().items()}
        torch.save(state, self.out / f"policy_init_rank{trainer.global_rank}.pt")

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.rec["ids"][trainer.global_step] = list(batch.ids)
        self.first = getattr(self, "first", batch)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        # between steps: under ZeRO-3 a frozen weight is released to this rank's partition
        frozen = module.frozen.get_input_embeddings().weight
        self.rec["frozen"][trainer.global_step] = zero_status(frozen)
        self.rec["policy"][trainer.global_step] = zero_status(next(module.policy.parameters()))

    def on_train_end(self, trainer, module):
        r = trainer.global_rank
        self.rec["rank"], self.rec["world"] = r, trainer.world_size
        self.rec["strategy"] = type(trainer.strategy).__name__
        self.rec["policy_numel"] = sum(getattr(p, "ds_numel", p.numel()) for p in module.policy.parameters())
        opt = trainer.strategy.optimizers[0]
        inner = getattr(opt, "optimizer", opt)  # DeepSpeed's ZeRO optimizer wraps the torch AdamW
        self.rec["optimizer"] = type(opt).__name__
        self.rec["adam_state_numel"] = sum(s["exp_avg"].numel() for s in inner.state.values() if "exp_avg" in s)
        torch.save({k: v.detach().clone() for k, v in module.policy.state_dict().items()}, self.out / f"policy_rank{r}.pt")
        # CE with all visual tokens of the first batch: as the run computed it (under ZeRO-3 from weights gathered
        # on use) and from a fresh, whole copy of the same tiny model (same seed) in this process
        from transformers.integrations.deepspeed import set_hf_deepspeed_config, unset_hf_deepspeed_config

        hf = getattr(module, "_hf_deepspeed", None)
        unset_hf_deepspeed_config()  # a whole copy: transformers must not see ZeRO-3 for it
        ref = build_mllm(module.cfg.mllm)
        if hf is not None:
            set_hf_deepspeed_config(hf)
        visual, prompts = encode(ref, self.first), ref.tokenize(self.first)
        full = torch.ones(len(self.first), 1, visual.num_tokens, dtype=torch.bool)
        self.rec["ce_base_run"] = module.baseline.get(self.first.ids, torch.device("cpu")).tolist()
        self.rec["ce_base_whole"] = ref.score(visual, prompts, full).ce[:, 0].tolist()
        self.rec["constructed"] = CONSTRUCTED
        (self.out / f"rank{r}.json").write_text(json.dumps(self.rec, indent=1))


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config([], argv[1:])
    try:
        fit(cfg, callbacks=[Recorder(out)])
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # ZeRO-3 once aborted at exit without it
    print(f"rank {os.environ.get('LOCAL_RANK', 0)} done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
