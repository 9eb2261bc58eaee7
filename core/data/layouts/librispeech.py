"""LibriSpeech-style trees (LibriSpeech, LibriTTS-style corpora):
``[SPLIT/]SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac`` with one
``SPEAKER-CHAPTER.trans.txt`` per chapter (lines ``SPEAKER-CHAPTER-NNNN TRANSCRIPT``).

Speaker and chapter come from the file name; the split is the folder above the speaker
folders (``train-clean-100``, ``dev-clean``, ...), so ``--members train-clean-100`` labels by it.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from core.data.audio import classify_extension
from core.data.layouts.base import Item, Parsed, Tree, decode_text, label_from_dirs, register_layout

_TRANS = r"(\d+)-(\d+)\.trans\.txt"
_UTT = re.compile(r"(\d+)-(\d+)-(\d+)")
_DOCS = re.compile(r"(SPEAKERS|CHAPTERS|BOOKS|LICENSE|README)\.TXT", re.IGNORECASE)


def _detect(tree: Tree) -> bool:
    return bool(tree.named(_TRANS))


@register_layout("librispeech", detect=_detect, summary="SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac + SPEAKER-CHAPTER.trans.txt")
def read_librispeech(tree: Tree) -> Parsed:
    parsed = Parsed()
    texts: dict[str, str] = {}
    for path in tree.named(_TRANS):
        parsed.used.add(path)
        folder = PurePosixPath(path).parent
        for n, line in enumerate(decode_text(tree.files[path].read(), path, parsed.warnings).splitlines(), start=1):
            utt, _, text = line.strip().partition(" ")
            if not utt:
                continue
            if not _UTT.fullmatch(utt):
                parsed.warnings.append(f"{path} line {n}: {utt[:60]!r} is not an utterance id SPEAKER-CHAPTER-NNNN; line ignored")
                continue
            texts[str(folder / utt)] = text.strip()
    parsed.used.update(p for p in tree.files if _DOCS.fullmatch(PurePosixPath(p).name))
    for path in tree.files:
        pp = PurePosixPath(path)
        m = _UTT.fullmatch(pp.stem)
        if classify_extension(path) != "audio" or not m:
            continue
        speaker, chapter = m.group(1), m.group(2)
        parts = pp.parts
        in_tree = len(parts) >= 3 and parts[-3] == speaker and parts[-2] == chapter
        key = str(pp.with_suffix(""))
        if key not in texts:
            parsed.warnings.append(f"{path}: no line in {speaker}-{chapter}.trans.txt; stored without a transcript")
        parsed.items.append(Item(
            path=path, read=tree.files[path].read, label=label_from_dirs(path), text=texts.get(key, ""),
            speaker=speaker, source=f"{speaker}-{chapter}",
            split=parts[-4] if in_tree and len(parts) >= 4 else "",
            fields={"speaker": speaker, "chapter": chapter},
        ))
    return parsed
