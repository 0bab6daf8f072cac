"""One citation source: the registry's `papers` keys and `effhub.citations` agree with CITATION.cff."""

from pathlib import Path

import pytest
import yaml

from effhub.citations import REFERENCES, bibtex
from effhub.errors import ConfigError
from effhub.registry import list_methods

CITATION_CFF = Path(__file__).resolve().parents[1] / "CITATION.cff"


def _cff_titles() -> set[str]:
    cff = yaml.safe_load(CITATION_CFF.read_text(encoding="utf-8"))
    return {cff["title"]} | {reference["title"] for reference in cff.get("references", [])}


def test_every_key_is_a_citation_cff_reference_with_the_same_title():
    titles = _cff_titles()
    used = {key for entry in list_methods() for key in entry.papers}
    missing = sorted(used - set(REFERENCES))
    assert not missing, f"registry papers without an entry in effhub/citations.py: {missing}"
    wrong = sorted(key for key, reference in REFERENCES.items() if reference.title not in titles)
    assert not wrong, f"citations.py titles not in CITATION.cff: {wrong}"


def test_every_citation_cff_reference_has_an_entry():
    cited = {reference.title for reference in REFERENCES.values()}
    assert not sorted(_cff_titles() - cited), "CITATION.cff references without an entry in effhub/citations.py"


def test_bibtex_entries():
    text = bibtex("sun2020adashare", "maninis2019attentive")
    assert text.startswith("@inproceedings{sun2020adashare,") and "@inproceedings{maninis2019attentive," in text
    assert text.count("{") == text.count("}")
    with pytest.raises(ConfigError, match="no-such-paper"):
        bibtex("no-such-paper")
