"""What a training run is: the spec (pydantic, strict), architecture presets, and its fingerprint.

A spec fixes everything that changes the numbers a run produces. ``fingerprint`` hashes exactly
those fields (plus the init and the mixture) so a resume from a different spec is refused and a
re-run of a finished identical run is a no-op. Fields that only change speed, rounding or bookkeeping
(device, threads, compile, fsdp, keep_last, checkpoint cadence, logging) are left out of it: a run
started on a CPU may be resumed on a GPU.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from growmerge.config import Strict
from growmerge.errors import GrowmergeError

# Architecture presets for fresh models. The vocabulary always comes from the tokenizer / shards.
PRESETS: dict[str, dict] = {
    # The paper's 1x shape (SmolLM2-180M with the Llama-3.3 tokenizer: 180M parameters).
    "smollm2-180m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         intermediate_size=1536, initializer_range=0.0417, max_position_embeddings=2048),
    # CPU presets: the demo trains ~15 of these in minutes.
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, initializer_range=0.0417, max_position_embeddings=1024),
    "demo-small": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=384, initializer_range=0.0417, max_position_embeddings=1024),
    "demo-medium": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=768, initializer_range=0.0417, max_position_embeddings=1024),
}

# Fields that do not change the numbers of a run (see module docstring).
NOT_FINGERPRINTED = {"device", "threads", "compile", "fsdp", "keep_last", "checkpoint_every_steps",
                     "checkpoint_every_flops", "checkpoints", "log_every"}


class TrainSpec(Strict):
    init: str | None = None  # an HF model dir / hub id, or a preset name (PRESETS)
    tokens: int | None = Field(None, gt=0)  # budget in tokens (rounded up to whole steps) ...
    steps: int | None = Field(None, gt=0)  # ... or in optimizer steps; neither = one pass over the mixture
    seq_len: int | None = Field(None, gt=1)  # must equal the shards' seq_len (default: theirs)
    global_batch: int = Field(32, gt=0)  # sequences per optimizer step, over all ranks
    micro_batch: int | None = Field(None, gt=0)  # sequences per forward per rank (default: all of a rank's)
    lr: float = Field(3e-3, gt=0, le=1)  # above 1 AdamW only diverges (its steps are ~lr per weight)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0, le=1)
    warmup_fraction: float = Field(0.002, ge=0, le=1)
    warmup_min_steps: int = Field(10, ge=0)
    decay_fraction: float = Field(0.2, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    decay_norms_and_biases: bool = False
    grad_clip: float | None = Field(1.0, gt=0)
    dtype: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N (growmerge.device.pick_device)
    fsdp: bool = False  # under torchrun: FSDP2 instead of DDP
    checkpoint_every_steps: int | None = Field(None, gt=0)
    checkpoint_every_flops: float | None = Field(None, gt=0)
    checkpoints: int | None = Field(None, gt=0)  # or: this many exports evenly spaced over the run
    keep_last: int = Field(2, ge=1)  # resumable states kept (every exported HF checkpoint is kept)
    seed: int = 0
    threads: int | None = Field(None, gt=0)
    log_every: int = Field(1, gt=0)

    @field_validator("device")
    @classmethod
    def _device_form(cls, v: str) -> str:
        from growmerge.device import check_spec

        try:
            return check_spec(v)
        except GrowmergeError as exc:  # as ValueError, pydantic names the YAML key in the message
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _one_budget(self):
        if self.tokens is not None and self.steps is not None:
            raise ValueError("give either tokens or steps as the budget, not both")
        return self

    def fingerprint(self, init: str, mixture_desc: list) -> str:
        """Hash of everything that determines the run's numbers."""
        fields = self.model_dump(mode="json", exclude=NOT_FINGERPRINTED | {"init"})
        blob = json.dumps({"spec": fields, "init": init, "mixture": mixture_desc}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def preset_config(name: str, vocab_size: int, bos_id: int | None, eos_id: int | None):
    """A LlamaConfig for a preset (tied embeddings, RMSNorm eps 1e-5, RoPE theta 10,000 as in the paper)."""
    from transformers import LlamaConfig

    if name not in PRESETS:
        raise GrowmergeError(f"unknown preset {name!r}: use a model directory or one of {', '.join(PRESETS)}")
    return LlamaConfig(vocab_size=vocab_size, tie_word_embeddings=True, rms_norm_eps=1e-5,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                       bos_token_id=bos_id, eos_token_id=eos_id, **PRESETS[name])
