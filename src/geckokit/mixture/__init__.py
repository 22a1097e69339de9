"""The unified training mixture (Gecko, section 3.1 and 3.3): FRet plus human-labelled sets,
all as (task, query, positive, negative, source) rows in the unified format."""

from geckokit.mixture.adapters import (
    MIXTURE_SCHEMA,
    from_beir_pairs,
    from_claims,
    from_classification,
    from_fret,
    from_nli,
    from_qa_pairs,
    from_sts,
)

__all__ = [
    "MIXTURE_SCHEMA",
    "from_beir_pairs",
    "from_claims",
    "from_classification",
    "from_fret",
    "from_nli",
    "from_qa_pairs",
    "from_sts",
]
