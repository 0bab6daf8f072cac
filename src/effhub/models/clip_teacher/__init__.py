"""`clip-teacher`: a small CLIP model trained offline on effhub's generated caption world.

The model is a plain `transformers.CLIPModel` (no custom class, nothing to register with the Auto classes): the
run folder loads with `CLIPModel`, `AutoProcessor` and `pipeline("zero-shot-image-classification")` without effhub.
This package adds the CLIP-format tokenizer trainer, the processor, the training recipe and the evaluation.
"""

from ...registry import MethodEntry, register_method

register_method(
    MethodEntry(
        name="clip-teacher",
        kind="model",
        description="a small CLIP (transformers CLIPModel) trained on the generated caption world: the offline teacher",
        recipe_class="effhub.models.clip_teacher.training_clip_teacher:CLIPTeacherRecipe",
        train="effhub.models.clip_teacher.training_clip_teacher:train",
        evaluate="effhub.models.clip_teacher.evaluation:evaluate_run",
        papers=("radford2021clip",),
    )
)

__all__: list[str] = []
