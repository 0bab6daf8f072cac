"""BibTeX of every reference effhub cites, by key: the one citation source of cards and metric modules.

Each entry mirrors one reference of the repository's `CITATION.cff` (same title; `effhub` is the software itself),
and the keys are those of the registry's `MethodEntry.papers` (tests/test_citations.py checks both).

    >>> from effhub.citations import bibtex
    >>> print(bibtex("sun2020adashare"))
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Reference:
    """One reference, as `CITATION.cff` lists it.

    Args:
        entry_type (`str`): the BibTeX entry type (`inproceedings`, `article`, `phdthesis`, `software`).
        title (`str`): the title, exactly as in `CITATION.cff`.
        authors (`tuple[str, ...]`): "Family, Given" names in order.
        year (`int`, *optional*): the year of publication.
        venue (`str`, *optional*): the proceedings (`booktitle`), journal or school, by entry type.
        note (`str`, *optional*): e.g. the arXiv identifier.
        url (`str`, *optional*): a link.
    """

    entry_type: str
    title: str
    authors: tuple[str, ...] = ()
    year: int | None = None
    venue: str | None = None
    note: str | None = None
    url: str | None = None


_VENUE_FIELD = {"inproceedings": "booktitle", "article": "journal", "phdthesis": "school"}

REFERENCES: dict[str, Reference] = {
    "effhub": Reference(
        "software", "effhub: efficient image and video understanding methods, packaged the Hugging Face way",
        ("effhub contributors",), note="version 0.1.0"),
    "sun2024thesis": Reference(
        "phdthesis", "Doctoral dissertation on efficient deep learning for visual understanding (OpenBU record)",
        ("Sun, Ximeng",), venue="Boston University",
        url="https://open.bu.edu/items/fa66076b-84e4-475c-8c76-53559de625cf"),
    "sun2020adashare": Reference(
        "inproceedings", "AdaShare: Learning What To Share For Efficient Deep Multi-Task Learning",
        ("Sun, Ximeng", "Panda, Rameswar", "Feris, Rogerio", "Saenko, Kate"), 2020,
        "Advances in Neural Information Processing Systems (NeurIPS)", "arXiv:1911.12423"),
    "sun2023labelbudget": Reference(
        "article", "Label Budget Allocation in Multi-Task Learning",
        ("Sun, Ximeng", "Sohn, Kihyuk", "Saenko, Kate", "Mellina, Clayton", "Bian, Xiao"), 2023,
        "arXiv preprint", "arXiv:2308.12949"),
    "sun2023dimefm": Reference(
        "inproceedings", "DIME-FM: DIstilling Multimodal and Efficient Foundation Models",
        ("Sun, Ximeng", "Zhang, Pengchuan", "Zhang, Peizhao", "Shah, Hardik", "Saenko, Kate", "Xia, Xide"), 2023,
        "IEEE/CVF International Conference on Computer Vision (ICCV)", "arXiv:2303.18232"),
    "sun2022dualcoop": Reference(
        "inproceedings", "DualCoOp: Fast Adaptation to Multi-Label Recognition with Limited Annotations",
        ("Sun, Ximeng", "Hu, Ping", "Saenko, Kate"), 2022,
        "Advances in Neural Information Processing Systems (NeurIPS)", "arXiv:2206.09541"),
    "sun2021videoiq": Reference(
        "inproceedings", "Dynamic Network Quantization for Efficient Video Inference",
        ("Sun, Ximeng", "Panda, Rameswar", "Chen, Chun-Fu", "Oliva, Aude", "Feris, Rogerio", "Saenko, Kate"), 2021,
        "IEEE/CVF International Conference on Computer Vision (ICCV)", "arXiv:2108.10394"),
    "radford2021clip": Reference(
        "inproceedings", "Learning Transferable Visual Models From Natural Language Supervision",
        ("Radford, Alec", "Kim, Jong Wook", "Hallacy, Chris", "Ramesh, Aditya", "Goh, Gabriel", "Agarwal, Sandhini",
         "Sastry, Girish", "Askell, Amanda", "Mishkin, Pamela", "Clark, Jack", "Krueger, Gretchen",
         "Sutskever, Ilya"), 2021,
        "International Conference on Machine Learning (ICML)", "arXiv:2103.00020"),
    "zhai2022lit": Reference(
        "inproceedings", "LiT: Zero-Shot Transfer with Locked-image text Tuning",
        ("Zhai, Xiaohua", "Wang, Xiao", "Mustafa, Basil", "Steiner, Andreas", "Keysers, Daniel",
         "Kolesnikov, Alexander", "Beyer, Lucas"), 2022,
        "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)", "arXiv:2111.07991"),
    "huang2024tag2text": Reference(
        "inproceedings", "Tag2Text: Guiding Vision-Language Model via Image Tagging",
        ("Huang, Xinyu", "Zhang, Youcai", "Ma, Jinyu", "Tian, Weiwei", "Feng, Rui", "Zhang, Yuejie", "Li, Yaqian",
         "Guo, Yandong", "Zhang, Lei"), 2024,
        "International Conference on Learning Representations (ICLR)", "arXiv:2303.05657"),
    "maninis2019attentive": Reference(
        "inproceedings", "Attentive Single-Tasking of Multiple Tasks",
        ("Maninis, Kevis-Kokitsi", "Radosavovic, Ilija", "Kokkinos, Iasonas"), 2019,
        "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)"),
    "long2015fully": Reference(
        "inproceedings", "Fully Convolutional Networks for Semantic Segmentation",
        ("Long, Jonathan", "Shelhamer, Evan", "Darrell, Trevor"), 2015,
        "IEEE Conference on Computer Vision and Pattern Recognition (CVPR)"),
    "eigen2014depth": Reference(
        "inproceedings", "Depth Map Prediction from a Single Image using a Multi-Scale Deep Network",
        ("Eigen, David", "Puhrsch, Christian", "Fergus, Rob"), 2014,
        "Advances in Neural Information Processing Systems (NeurIPS)"),
    "eigen2015predicting": Reference(
        "inproceedings",
        "Predicting Depth, Surface Normals and Semantic Labels with a Common Multi-Scale Convolutional Architecture",
        ("Eigen, David", "Fergus, Rob"), 2015, "IEEE International Conference on Computer Vision (ICCV)"),
    "chen2019multi": Reference(
        "inproceedings", "Multi-Label Image Recognition with Graph Convolutional Networks",
        ("Chen, Zhao-Min", "Wei, Xiu-Shen", "Wang, Peng", "Guo, Yanwen"), 2019,
        "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)"),
    "russakovsky2015imagenet": Reference(
        "article", "ImageNet Large Scale Visual Recognition Challenge",
        ("Russakovsky, Olga", "Deng, Jia", "Su, Hao", "Krause, Jonathan", "Satheesh, Sanjeev", "Ma, Sean",
         "Huang, Zhiheng", "Karpathy, Andrej", "Khosla, Aditya", "Bernstein, Michael", "Berg, Alexander C.",
         "Fei-Fei, Li"), 2015, "International Journal of Computer Vision"),
}
"""Every reference by citation key (one per reference of `CITATION.cff`, plus the software itself)."""


def bibtex(*keys: str) -> str:
    """The BibTeX entries of `keys`, in that order, separated by blank lines.

    Args:
        *keys (`str`): citation keys of :data:`REFERENCES` (a method's `MethodEntry.papers`).
    """
    entries = []
    for key in keys:
        if key not in REFERENCES:
            raise ConfigError(f"No reference has the citation key '{key}' (known: {sorted(REFERENCES)})",
                              "add it to effhub/citations.py and CITATION.cff, or use a known key")
        reference = REFERENCES[key]
        fields = [("title", reference.title)]
        if reference.authors:
            fields.append(("author", " and ".join(reference.authors)))
        if reference.venue:
            fields.append((_VENUE_FIELD.get(reference.entry_type, "publisher"), reference.venue))
        if reference.year is not None:
            fields.append(("year", str(reference.year)))
        if reference.note:
            fields.append(("note", reference.note))
        if reference.url:
            fields.append(("url", reference.url))
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
        entries.append(f"@{reference.entry_type}{{{key},\n{body}\n}}")
    return "\n\n".join(entries)


__all__ = ["Reference", "REFERENCES", "bibtex"]
