"""A character-level tokenizer for the built-in reference targets.

It is a :class:`transformers.PreTrainedTokenizerFast` built with the ``tokenizers`` library,
so a zoo model folder loads through ``AutoTokenizer.from_pretrained`` exactly like a real
checkpoint. Ids are stable: the four special tokens come first, then the alphabet in order.

Text is NFKD-normalized, stripped of accents and lower-cased; characters outside the alphabet map to ``<unk>``.
With ``add_special_tokens=True`` (the ``transformers`` default) an encoding is
``<s> chars </s>``, mirroring Whisper's ``<|startoftranscript|> ... <|endoftext|>``.
"""

from __future__ import annotations

from pathlib import Path

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
DEFAULT_ALPHABET = " abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"-()/&%"


def char_tokenizer(*, alphabet: str = DEFAULT_ALPHABET, lowercase: bool = True):
    """Build a character-level fast tokenizer.

    Parameters
    ----------
    alphabet : str
        The characters with their own id, in id order after the special tokens
        (``<pad>`` = 0, ``<s>`` = 1, ``</s>`` = 2, ``<unk>`` = 3). Must not repeat a character.
    lowercase : bool
        Lower-case text before splitting it into characters.

    Returns
    -------
    transformers.PreTrainedTokenizerFast
        ``vocab_size == 4 + len(alphabet)``; ``decode`` concatenates characters without
        separators.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if len(set(alphabet)) != len(alphabet):
        raise ValueError("alphabet repeats a character")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in alphabet:
        if ch in vocab:
            raise ValueError(f"alphabet character {ch!r} collides with a special token")
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Accents are stripped so "café" spells "cafe" rather than "caf<unk>".
    norms = [normalizers.NFKD(), normalizers.StripAccents()] + ([normalizers.Lowercase()] if lowercase else [])
    tok.normalizer = normalizers.Sequence(norms)
    # Every character (spaces included) becomes its own pre-token.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        pair=f"{BOS} $A {EOS} $B {EOS}",
        special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(folder: str | Path):
    """Load a tokenizer saved beside a checkpoint (``AutoTokenizer``, local files only)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
