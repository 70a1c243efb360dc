"""Tiny randomly initialised Qwen2-VL / Qwen2.5-VL models of the REAL transformers classes, built offline.

Tests and CPU smoke runs need a frozen video MLLM that exercises the real code paths (vision tower with
its window / per-frame attention, patch merger, M-RoPE language model, lm_head) without downloading
gigabytes. `build_tiny(family, seed)` makes one from a config in code (~200k parameters, < 1 s) plus a
word-level tokenizer built in code whose special tokens are Qwen's chat tokens, so the stock prompt
template tokenizes the same way as with the real tokenizer (special tokens as single ids).
`save_tiny(dir, family, seed)` writes a standard Hugging Face directory (config.json + safetensors +
tokenizer.json + preprocessor_config.json) that the adapter's path loading reads back with stock
`from_pretrained`, so the on-disk path is tested end to end.

Sizes (kept small but with every structural feature of the real models):
vision patch 8, spatial merge 2, temporal patch 2, depth 2; text width 64, 2 layers, 4 heads
(head_dim 16, mrope_section [2, 3, 3] sums to head_dim / 2 as transformers 5.23 requires), vocab = the
tokenizer's size rounded up to a multiple of 64, bos / eos inside it. Weights are drawn with std
INIT_STD = 0.1 (HF's default is 0.02; see below).

The tokenizer: WordLevel over whitespace-separated words, with single digits and punctuation split
off (Whitespace + Digits + Punctuation pre-tokenizers, so "12?" is "1", "2", "?" rather than [UNK]);
anything outside the vocabulary is [UNK]. Unlike Qwen's byte-level BPE it drops whitespace, so
newlines of the chat template leave no token; that changes nothing the adapter relies on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>",  # pad / bos, as in Qwen's tokenizer
    "<|im_start|>",
    "<|im_end|>",  # eos
    "<|vision_start|>",
    "<|vision_end|>",
    "<|video_pad|>",
    "<|image_pad|>",
]
UNK = "[UNK]"
# Weight init std (HF default 0.02). 0.1 makes the random model sensitive to which visual tokens it
# sees and to their positions (CE moves by ~0.1-0.3 nats, not ~1e-3), so equivalence tests at 1e-4
# can tell a wrong position id or a leaked dropped token from rounding.
INIT_STD = 0.1

# Words of the default prompt template, then a generic question / answer vocabulary.
_TEMPLATE_WORDS = "system You are a helpful assistant user".split()
_QUESTION_WORDS = """
what which who where when why how many much is are was were does do did the a an of in on at to from with
and or not no yes this that these those there it its video clip frame frames scene scenes shot object objects
thing things color colour shape size person people man woman child car dog cat bird ball box cup tree house
red green blue yellow black white orange purple pink brown gray grey left right top bottom middle center front
back first last second third next before after during end start beginning happens happen happened change
changes changed appear appears appeared disappear moving moves move moved still static cut cuts count number
time times answer option options choose select correct best letter image picture pictures shown shows show see
seen visible held hold holds one two three four five six seven eight nine ten question given following about
he she they them his her their can could will would should may might has have had be been being
""".split()
_PUNCTUATION = list(".,?!:;'\"()-/")


def tiny_vocabulary() -> list[str]:
    """[UNK], words (lower case and Capitalised), digits 0-9, letters A-E, punctuation; specials are added after."""
    words: list[str] = []
    for w in _TEMPLATE_WORDS + _QUESTION_WORDS:
        for v in (w, w.lower(), w.capitalize()):
            if v not in words:
                words.append(v)
    extra = [str(d) for d in range(10)] + list("ABCDE") + _PUNCTUATION
    return [UNK] + words + [t for t in extra if t not in words]


def build_tiny_tokenizer(extra_words: tuple[str, ...] = ()):
    """A PreTrainedTokenizerFast over a WordLevel model: whitespace words, single digits, isolated punctuation;
    `extra_words` are appended to the vocabulary (a family's own words, e.g. Qwen3's "<0.5 seconds>" timestamps)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = tiny_vocabulary()
    vocab = {tok: i for i, tok in enumerate(words + [w for w in extra_words if w not in words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Whitespace(),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.Punctuation("isolated"),
        ]
    )
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=UNK, pad_token="<|endoftext|>", eos_token="<|im_end|>", bos_token=None
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    return fast


def qwen_tiny_dicts(tokenizer) -> tuple[dict, dict, dict]:
    """(text, vision, common) config dicts of the tiny Qwen-VL models at the sizes documented above; the
    family adapters (score_lit.mllm.qwen_vl) add their vision widths and the caller's overrides."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(
        vocab_size=-(-len(tokenizer) // 64) * 64,
        initializer_range=INIT_STD,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    common = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    vision = dict(
        depth=2,
        num_heads=2,
        in_channels=3,
        patch_size=8,
        spatial_merge_size=2,
        temporal_patch_size=2,
        initializer_range=INIT_STD,
    )
    return text, vision, common


def _config(family: str, tokenizer, text_overrides: dict | None = None, vision_overrides: dict | None = None):
    """(model class, config) of `family`'s tiny model (its adapter's `tiny_config`); the overrides update the
    text / vision sub-config dicts (sizes of the trained toy model, score_lit.toy.model)."""
    from score_lit.mllm import adapter_class

    return adapter_class(family).tiny_config(tokenizer, text_overrides, vision_overrides)


def build_tiny(family: str, seed: int = 0, attn_implementation: str = "sdpa"):
    """(model, tokenizer): a seeded random model of the real class for `family`, in float32 eval mode."""
    from score_lit.mllm import adapter_class

    return adapter_class(family).build_tiny(seed, attn_implementation)


def save_tiny(path: str | os.PathLike, family: str, seed: int = 0) -> Path:
    """Write build_tiny(family, seed) as a standard HF directory (model, tokenizer, preprocessor config)."""
    return save_hf_dir(*build_tiny(family, seed), path)


def save_hf_dir(model, tokenizer, path: str | os.PathLike) -> Path:
    """A standard HF directory that stock from_pretrained and mllm.path both read: config + safetensors,
    tokenizer, and the preprocessor config the family's checkpoints carry (its adapter's `save_processor`;
    the family is the config's model_type, which is its registry name)."""
    from score_lit.mllm import adapter_class

    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    # Declare the plain class, so score_lit.mllm.prompts.load_tokenizer reads tokenizer.json back as it is (AutoTokenizer alone would
    # turn a qwen3_5 checkpoint's into a Qwen3_5Tokenizer that splits the tiny vocabulary's words apart).
    tc = path / "tokenizer_config.json"
    tc.write_text(json.dumps({**json.loads(tc.read_text()), "tokenizer_class": "PreTrainedTokenizerFast"}, indent=2))
    adapter_class(model.config.model_type).save_processor(model, path)
    return path
