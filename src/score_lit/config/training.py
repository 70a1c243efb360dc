"""The model and training sections of a run's config: the frozen MLLM, the policy, the RL objective, the
curriculum phases (stage1 / stage2), validation, the optimiser, the Lightning trainer and MLflow tracking.
Each dataclass's defaults are the documented knobs (with the reason for each) and its `__post_init__` holds its
checks. The run-level Config that holds them is score_lit.config.schema.

Where this deviates from the paper: PolicyConfig's and RLConfig's defaults are the recommended recipe, the policy
ablation's winner (query_mlp, 32 wide, budget rollouts, lambda 0.1; docs/RESULTS.md), not the paper's (mlp, 256
wide, Bernoulli rollouts), which conf/recipe/paper.yaml sets by name on top of any run config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from score_lit.config import names
from score_lit.config.data_eval import DataConfig
from score_lit.config.names import check_registered
from score_lit.config.retention import check_ratio as _check_ratio
from score_lit.errors import ConfigError
from score_lit.errors import check_choice as _check_choice


@dataclass
class MLLMConfig:
    """The frozen multimodal LLM (never trained, never checkpointed)."""

    # Registry name of the adapter (score_lit.mllm; the list: names.MLLM_FAMILIES): qwen2_5_vl | qwen2_vl |
    # llava_onevision (the HF ports of LLaVA-OneVision and LLaVA-Video, LlavaOnevisionForConditionalGeneration) |
    # qwen3_vl | qwen3_5.
    family: str = "qwen2_5_vl"
    # A local HF checkpoint directory (e.g. /models/Qwen2.5-VL-7B-Instruct). None builds the tiny
    # randomly initialised model of the same transformers class from a config in code (tests, CPU smoke).
    path: str | None = None
    # Seed of the tiny random model's weights (only when path is None).
    tiny_seed: int = 0
    # float32 on CPU; bfloat16 for real checkpoints on GPU.
    dtype: str = "float32"
    # sdpa works everywhere and needs no attention maps (compression happens before the LLM).
    attn_implementation: str = "sdpa"
    # The chat prompt around the video; {video} marks where the visual tokens go, {question} the question.
    # This is Qwen2/2.5-VL's own chat template for one video and one user turn. Left at this default with
    # family=llava_onevision, the adapter uses LLaVA-OneVision's own template instead
    # (score_lit.mllm.llava_onevision.LLAVA_OV_TEMPLATE); any other value is used as given by every family.
    prompt_template: str = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|>{video}<|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"
    )
    # Pixel budget per frame for the processor's smart resize (Qwen's min/max_pixels); frames are
    # resized to multiples of patch_size * merge_size within it.
    min_pixels: int = 16 * 16
    max_pixels: int = 448 * 448
    # Seconds between sampled frames when the data does not say (Qwen2.5-VL scales temporal positions by it).
    seconds_per_frame: float = 0.5
    # Position ids of a pruned sequence, for 1-D RoPE models (llava_onevision): "original" keeps every kept
    # token's and the text's ids of the FULL sequence (gaps where tokens were dropped; the method's default:
    # pruning never shifts the text), "compacted" renumbers 0..L-1 as if the dropped tokens never existed.
    # Qwen2/2.5-VL's M-RoPE always keeps original ids (compacted is refused there).
    position_ids: str = "original"

    def __post_init__(self) -> None:
        check_registered("mllm.family", self.family, list(names.MLLM_FAMILIES))
        _check_choice("mllm.dtype", self.dtype, ("float32", "bfloat16", "float16"))
        if self.position_ids not in ("original", "compacted"):
            raise ConfigError(f"mllm.position_ids={self.position_ids!r}: use 'original' or 'compacted'")
        modes = names.MLLM_FAMILIES[self.family]
        if self.position_ids not in modes:
            raise ConfigError(
                f"mllm.position_ids={self.position_ids} is not implemented for {self.family}: use mllm.position_ids="
                + " or ".join(modes)
            )


@dataclass
class PolicyConfig:
    """The compressor: a token-wise network over the surprise-augmented state [LN(x); LN(dx)]."""

    # Registry name (score_lit.rl.policy): mlp (the paper's: each token alone) | query_mlp (ours: also conditioned
    # on the question, FiLM on the mean of the question's input embeddings in the frozen LLM) | temporal_mlp (ours:
    # hidden units also see the same position in the neighbouring temporal units).
    # query_mlp, with rl.sampler=budget: the policy ablation's winner on the evidence benchmark (docs/RESULTS.md
    # [B]: 90.5% at 5% retention against the paper's mlp with Bernoulli rollouts at 89.0%, and 85.8% for mlp at 32
    # wide with either sampler). It needs the question's embedding (VideoMLLM.question_embedding) at every call.
    name: str = "query_mlp"
    # Paper: "lightweight", no width given. 32: on the 4-layer evidence toy the 256-wide policy (the paper's recipe
    # here, conf/recipe/paper.yaml) cost 7% of vanilla's prefill, the 32-wide 1% (RESULTS [B]: accuracy at 10% / 5%
    # retention 94.0 / 89.0 for the paper's recipe, 93.5 / 90.5 for query_mlp/budget 32 wide).
    hidden: int = 32
    activation: str = "gelu"
    # Output bias = logit(init_keep_prob), so the first rollouts explore around half the tokens.
    init_keep_prob: float = 0.5
    # Inference selection: global top-k over the whole video (frames that change get more budget)
    # or per_frame (the same k in every temporal unit).
    selection: str = "global"

    def __post_init__(self) -> None:
        check_registered("policy.name", self.name, names.POLICIES)
        check_registered("policy.activation", self.activation, names.ACTIVATIONS)
        if not (0.0 < self.init_keep_prob < 1.0):
            raise ConfigError(f"policy.init_keep_prob={self.init_keep_prob} must lie strictly between 0 and 1")
        if self.selection not in ("global", "per_frame"):
            raise ConfigError(f"policy.selection={self.selection!r}: use 'global' or 'per_frame'")
        if self.hidden < 1:
            raise ConfigError(f"policy.hidden={self.hidden} must be a positive width, e.g. 32")


@dataclass
class RLConfig:
    """Group-wise RL: K masks per sample, fidelity + sparsity rewards, an advantage estimator by name."""

    # K: rollouts per sample. The paper's group; 8 gives a usable within-group std at modest cost.
    group_size: int = 8
    # Advantage estimator (score_lit.rl.advantage): split (default) | grpo | rloo.
    estimator: str = "split"
    # lambda: weight of the sparsity advantage against the fidelity advantage. Measured on the toy model with
    # the paper's recipe (mlp, 256 wide, Bernoulli rollouts; stage 1, 300 steps; mean over the last 100 steps):
    # 1.0 -> sampled keep 0.007, training dCE 0.55 nats (sampled masks often miss the digit);
    # 0.3 -> 0.012, 0.25; 0.1 -> 0.028, 0.07. Top-k validation is the same for all three.
    sparsity_weight: float = 0.1
    # tau (nats): a rollout whose answer CE rose by at most tau "kept the answer"; only those are
    # rewarded for sparsity, which is what stops the policy over-pruning for speed.
    gate_tau: float = 0.1
    # eps in the within-group z-score; also keeps a degenerate group (all equal) at advantage 0.
    eps: float = 1e-6
    # Optional entropy bonus on the Bernoulli keep distribution (0 = the figure's loss exactly).
    entropy_coef: float = 0.0
    # How the K masks are drawn (score_lit.rl.samplers): bernoulli (the paper's: independent per token) | budget
    # (ours: each rollout keeps rl.budgets[j] of the tokens in expectation, j drawn per rollout, so training sees
    # masks of the sizes evaluation keeps and trains the ranking top-k reads). budget: Bernoulli rollouts drift to
    # keeping a few percent of the tokens while evaluation keeps 5-25%; with query_mlp it trains the better ranking
    # at 5% (RESULTS [B]: 90.5% against 87.0% with Bernoulli rollouts; with mlp the two tie at 85.8%).
    sampler: str = "budget"
    # Keep fractions the budget sampler draws from (uniformly, per rollout); default: the evaluation's ratios.
    budgets: list[float] = field(default_factory=lambda: [0.05, 0.10, 0.15, 0.25])

    def __post_init__(self) -> None:
        check_registered("rl.estimator", self.estimator, names.ESTIMATORS)
        check_registered("rl.sampler", self.sampler, names.SAMPLERS)
        if not self.budgets or any(not 0.0 < b < 1.0 for b in self.budgets):
            raise ConfigError(
                f"rl.budgets={self.budgets}: give keep fractions strictly between 0 and 1, e.g. [0.05,0.1,0.25]"
            )
        if self.group_size < 2:
            raise ConfigError(
                f"rl.group_size={self.group_size}: every estimator compares a sample's K rollouts with each other, so with "
                f"K < 2 every advantage is 0 and nothing trains; use rl.group_size >= 2, e.g. rl.group_size=8"
            )
        if self.gate_tau < 0:
            raise ConfigError(f"rl.gate_tau={self.gate_tau} must be >= 0 (nats of answer CE the gate tolerates)")


PHASES = ("stage1", "stage2")


@dataclass
class PhaseConfig:
    """One phase of the curriculum (docs/METHOD.md "Curriculum"): how many optimizer steps, on which data."""

    steps: int = 300
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps={self.steps} of a phase must be >= 1")


@dataclass
class ValConfig:
    """Held-out validation with the policy's deterministic top-k."""

    every_n_steps: int = 50
    # Retention ratios validated (logged as val/accuracy_r0.25 ...); 1.00 (all tokens) is added once per run.
    ratios: list[float] = field(default_factory=lambda: [0.25, 0.10])
    # The bound (nats) the run promises on validation dCE at the smallest ratio: the policy's top-k
    # must keep the answer's likelihood within it. Logged as val/dce_bound_ok (1 = within).
    dce_bound: float = 0.1

    def __post_init__(self) -> None:
        for r in self.ratios:
            _check_ratio("val.ratios", r)
        if self.every_n_steps < 1:
            raise ConfigError(f"val.every_n_steps={self.every_n_steps} must be >= 1")


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # 0 disables clipping


@dataclass
class TrainerConfig:
    """Passed to lightning.Trainer. The run's length is the sum of its phases' steps (stage1.steps, ...)."""

    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    # auto | ddp | deepspeed_zero2 | deepspeed_zero3 (score_lit.training.strategies; conf/trainer/*.yaml). Groups of K
    # rollouts always stay on one rank: each rank trains its own samples (the curriculum shards them).
    strategy: str = "auto"
    # 32-true on CPU; bf16-mixed on GPU (under DeepSpeed: bf16 weights, fp32 master weights in the optimizer).
    precision: str = "32-true"
    log_every_n_steps: int = 1
    # ZeRO-3 only: parameters of at most this many elements stay whole on every rank instead of being
    # partitioned (DeepSpeed's stage3_param_persistence_threshold; its default 1e5 spares norms and biases
    # the all-gathers). 0 partitions every frozen parameter (the CPU test does, so the tiny model is split).
    # The policy is kept whole regardless (score_lit.training.strategies.keep_whole).
    zero3_persistence_threshold: int = 100_000

    def __post_init__(self) -> None:
        _check_choice("trainer.accelerator", self.accelerator, ("cpu", "gpu", "cuda", "mps", "tpu", "auto"))
        _check_choice("trainer.strategy", self.strategy, ("auto", "ddp", "deepspeed_zero2", "deepspeed_zero3"))
        if self.zero3_persistence_threshold < 0:
            raise ConfigError(
                f"trainer.zero3_persistence_threshold={self.zero3_persistence_threshold} must be >= 0, e.g. 100000"
            )


@dataclass
class TrackingConfig:
    """MLflow, through Lightning's MLFlowLogger."""

    # None -> $MLFLOW_TRACKING_URI if set, else sqlite:///<project root>/mlflow.db (MLflow 3.17 refuses the old
    # ./mlruns file store). A server, http(s)://HOST:PORT, must answer when the run starts; an outage during the run
    # is waited out (score_lit.training.tracking_server).
    tracking_uri: str | None = None
    experiment: str = "score_lit"
    run_name: str | None = None
    # Log metrics from MLflow's background queue instead of one blocking sqlite write per step (about
    # 10 ms a step on the toy setup, where a whole step is 80 ms). Flushed before the run ends. Not with a
    # server: the queue drops a batch it fails to send, so a server's batches are sent one by one (a
    # loopback server took about 10 ms a batch).
    async_logging: bool = True
    # Where a new experiment stores artifacts (policy.pt, plots). None -> mlartifacts/ beside a sqlite
    # store's file (not ./mlruns of whatever folder the command ran in).
    artifact_location: str | None = None
    # While a tracking server is unreachable, a logging step asks it this often (seconds) whether it is back
    # (one plain HTTP request); the metrics kept meanwhile go up when it answers.
    retry_every_s: float = 30.0

    def __post_init__(self) -> None:
        if self.retry_every_s <= 0:
            raise ConfigError(f"tracking.retry_every_s={self.retry_every_s} must be > 0 seconds, e.g. 30")
