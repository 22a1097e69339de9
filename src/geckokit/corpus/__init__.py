"""Corpus loading: many file layouts in, one table of passages out.

:func:`load_corpus` reads JSONL, Parquet, CSV, a BEIR folder (``corpus.jsonl``) or a folder of
``.txt``/``.md`` files and returns a :class:`Corpus` whose ``passages`` table has the columns
``passage_id``, ``title`` and ``text``. Ids are kept when given and derived from content when
not; long documents are split into passages by a token budget with overlap; empty and
exact-duplicate passages are dropped and counted in ``stats``.
"""

from __future__ import annotations

from geckokit.corpus.load import Corpus, CorpusError, CorpusStats, load_corpus
from geckokit.corpus.split import count_tokens, split_passage

__all__ = ["Corpus", "CorpusError", "CorpusStats", "count_tokens", "load_corpus", "split_passage"]
