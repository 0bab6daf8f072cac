"""The shared layers know no method: no method name in `training/`, `data/` (readers of the authors' formats aside),
`metrics/` or `hub/` (citation keys such as `sun2020adashare` are one word and do not match)."""

import re
from pathlib import Path

import effhub

PACKAGE = Path(effhub.__file__).resolve().parent
SHARED = ("training", "data", "metrics", "hub")
# readers of the authors' on-disk formats, which name the authors' code where they follow it
READERS = {"data/dense/nyuv2.py", "data/dense/cityscapes.py", "data/dense/taskonomy.py", "data/video/frames.py"}
# words that are a method's name and also plain words in a file: the caption world's size adjective "tiny"
PLAIN_WORDS = {("data/captions/world.py", "tiny")}
SUFFIXES = {".py", ".md", ".html", ".js", ".css", ".json", ".yaml"}
# a method name as a word; `.tiny` (e.g. `torch.finfo(...).tiny`) is an attribute, not a method
METHOD_NAME = re.compile(r"(?<![.\w])(adashare|videoiq|dualcoop|dime(-fm)?|tiny|clip.teacher|budget)\b", re.IGNORECASE)


def test_shared_layers_name_no_method():
    hits = []
    for folder in SHARED:
        for path in sorted((PACKAGE / folder).rglob("*")):
            relative = path.relative_to(PACKAGE).as_posix()
            if path.suffix not in SUFFIXES or relative in READERS or "__pycache__" in path.parts:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if any((relative, match.group(1).lower()) not in PLAIN_WORDS for match in METHOD_NAME.finditer(line)):
                    hits.append(f"{relative}:{number}: {line.strip()}")
    assert not hits, "method names in shared layers:\n" + "\n".join(hits)
