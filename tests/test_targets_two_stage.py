"""The two-stage token targets' common driver (core.targets.two_stage).

Fingerprints key users' evidence caches, so they are pinned: the values below were
computed by the adapters as they were before they shared one base, on the same tiny
random-weight checkpoints (built deterministically from a seed by the adapters' own test
modules). The batch-halving test runs a tiny real Whisper whose forward refuses batches
above two clips with the error CUDA raises.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration

from core.targets.base import ClipInput, EvidenceConfig
from core.targets.chat_lalm import ChatLALMTarget
from core.targets.fingerprint import folder_fingerprint
from core.targets.local import load_local
from core.targets.musicgen import MusicgenTarget
from core.targets.seq2seq import Seq2SeqTarget
from core.targets.two_stage import TwoStageTarget
from tests.test_targets_local import build_whisper
from tests.test_targets_musicgen import build as build_musicgen
from tests.test_targets_real_lalm import build as build_chat
from tests.test_targets_real_lalm import assert_same_stats, make_clips


@pytest.fixture(autouse=True, scope="module")
def _one_thread(torch_one_thread):
    """Every test of this module on one torch thread."""


BUILDERS = {
    "whisper": build_whisper,
    "qwen2_audio": lambda p: build_chat("qwen2_audio", p),
    "audioflamingo3": lambda p: build_chat("audioflamingo3", p),
    "musicgen": build_musicgen,
    "musicgen_stereo": lambda p: build_musicgen(p, audio_channels=2),
}

# folder_fingerprint of each tiny checkpoint's files: when one of these changes, the
# checkpoint's bytes changed (e.g. another transformers version), not the adapter.
FILES = {
    "whisper": "bcf2104ee5826b28",
    "qwen2_audio": "0394005db8e9ef2c",
    "audioflamingo3": "071f35b217b5231e",
    "musicgen": "e406c8aa1d93673a",
    "musicgen_stereo": "325988afc7a18faa",
}

PINNED = [
    ("whisper", {}, "1feca517d8ff0724"),
    ("whisper", {"max_new_tokens": 2}, "f5286e39aa3fc301"),
    ("whisper", {"generate_kwargs": {"num_beams": 2}}, "ae974453410932f9"),
    ("whisper", {"dtype": torch.float64}, "1d63bc3b10737c61"),
    ("qwen2_audio", {}, "b2ecfdee47c28c56"),
    ("qwen2_audio", {"batch_size": 3}, "b2ecfdee47c28c56"),
    ("qwen2_audio", {"prompt": "Describe the audio.", "system_prompt": "Be brief."}, "5ab5c9f3fde03c0e"),
    ("qwen2_audio", {"max_new_tokens": 10, "generate_kwargs": {"repetition_penalty": 1.1}}, "5a0f32988c6847b0"),
    ("qwen2_audio", {"dtype": "bfloat16"}, "b64f88fe53203ce7"),
    ("audioflamingo3", {}, "1caa6fae7e9c9a53"),
    ("audioflamingo3", {"prompt": "Describe the audio.", "system_prompt": "Be brief."}, "793d84f00b15ec76"),
    ("audioflamingo3", {"max_new_tokens": 10, "generate_kwargs": {"repetition_penalty": 1.1}}, "63992a1733945186"),
    ("audioflamingo3", {"dtype": "bfloat16"}, "feaaae2e4ec02beb"),
    ("musicgen", {}, "f62823b47395bec5"),
    ("musicgen", {"bandwidth": 3.0}, "1bf3d83d88334048"),
    ("musicgen", {"dtype": "float64"}, "978221a544ce2e3f"),
    ("musicgen_stereo", {}, "db2e80c48750ceda"),
    ("musicgen_stereo", {"bandwidth": 3.0}, "a3070dcea418c22e"),
    ("musicgen_stereo", {"dtype": "float64"}, "d26371cdcfc29404"),
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    return {name: build(tmp_path_factory.mktemp(name)) for name, build in BUILDERS.items()}


@pytest.mark.parametrize("name", sorted(FILES))
def test_tiny_checkpoints_are_the_pinned_bytes(folders, name):
    assert folder_fingerprint(folders[name]) == FILES[name]


@pytest.mark.parametrize(("name", "options", "expected"), PINNED, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(PINNED)])
def test_fingerprints_are_unchanged(folders, name, options, expected):
    t = load_local(folders[name], device="cpu", **options)
    assert isinstance(t, TwoStageTarget)
    assert t.fingerprint == expected


def test_every_adapter_shares_the_loading_rules(folders):
    kinds = {"whisper": Seq2SeqTarget, "qwen2_audio": ChatLALMTarget, "musicgen": MusicgenTarget}
    for name, cls in kinds.items():
        t = load_local(folders[name], device="cpu")
        assert type(t) is cls and t.trust_remote_code is False
        assert t.load_config.to_dict() == {"device": "cpu", "dtype": "float32", "trust_remote_code": False,
                                           "batch_size": 4}


class OutOfMemoryWhisper(WhisperForConditionalGeneration):
    """A tiny Whisper whose forward fails, as CUDA does, on more than ``limit`` sequences."""

    limit = 2
    batches: list[int] = []

    def forward(self, *args, **kwargs):
        sizes = [v.shape[0] for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor) and v.ndim > 0]
        OutOfMemoryWhisper.batches.append(max(sizes))
        if max(sizes) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (test: batch above the limit)")
        return super().forward(*args, **kwargs)


@pytest.mark.parametrize("mode", ["given", "generated"])
def test_seq2seq_halves_its_batch_on_out_of_memory(folders, mode):
    t = Seq2SeqTarget(folders["whisper"], device="cpu", batch_size=8)
    reference = t.evidence(make_clips(5, seed=2), EvidenceConfig(mode=mode), batch_size=1)
    t.model = OutOfMemoryWhisper.from_pretrained(str(folders["whisper"]), use_safetensors=True).eval()
    OutOfMemoryWhisper.batches = []
    clips = make_clips(5, seed=2)
    out = t.evidence(clips, EvidenceConfig(mode=mode))
    assert max(OutOfMemoryWhisper.batches) == 5  # the first try held every clip
    assert t.batch_size == 2  # 8 -> 4 -> 2, and kept for the next call
    assert [e.clip_hash for e in out] == [c.clip_hash for c in clips]
    for got, want in zip(out, reference):
        assert got.text == want.text and got.notes == want.notes
        assert_same_stats(got.tokens, want.tokens)
    OutOfMemoryWhisper.batches = []
    t.evidence(clips[:3], EvidenceConfig(mode=mode))
    assert max(OutOfMemoryWhisper.batches) <= 2


def test_out_of_memory_at_one_clip_propagates(folders):
    t = Seq2SeqTarget(folders["whisper"], device="cpu")
    t.model = OutOfMemoryWhisper.from_pretrained(str(folders["whisper"]), use_safetensors=True).eval()
    t.model.limit = 0
    with pytest.raises(torch.cuda.OutOfMemoryError):
        t.evidence([ClipInput("a", np.zeros(1600, np.float32), "hi")], EvidenceConfig(mode="given"))
