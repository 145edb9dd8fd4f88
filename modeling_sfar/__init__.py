"""SFAR for the Hugging Face ecosystem: configuration, models, processors, CLIP conversion; ALT, a second model.

Importing the package registers SFAR and ALT with the transformers auto classes, so a saved folder loads with
`AutoModel.from_pretrained(folder)` without remote code; a Hub repository loads with `trust_remote_code=True`. It
also registers the `"zero-shot-video-classification"` task (for a model object, or a folder saved before folders
registered their own pipelines; a folder that registers them builds them with `trust_remote_code=True`).
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForVideoClassification,
    AutoProcessor,
    AutoVideoProcessor,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .conversion.alt import alt_config_from_clip, clip_to_alt_state_dict, convert_clip_to_alt
from .conversion.sfar import clip_to_sfar_state_dict, convert_clip_to_sfar, sfar_config_from_clip
from .remote_code.configuration_alt import ALT_PROMPT_TEMPLATES, AltConfig
from .remote_code.configuration_clip_video import ACTIONCLIP_PROMPT_TEMPLATES, ClipVideoConfig, class_name_to_text
from .remote_code.configuration_sfar import DEFAULT_PROMPT_TEMPLATE, SFAR_VARIANTS, SfarConfig
from .remote_code.label_set_sfar import SfarLabelSet
from .remote_code.modeling_alt import (
    AltForVideoClassification,
    AltLabelSet,
    AltModel,
    AltModelOutput,
    AltVideoClassifierOutput,
)
from .remote_code.modeling_clip_video import average_over_views
from .remote_code.modeling_sfar import (
    SfarForVideoClassification,
    SfarModel,
    SfarModelOutput,
    SfarVideoClassifierOutput,
    actionclip_loss,
    sfar_loss,
    text_prompt_perplexity,
)
from .remote_code.pipeline_clip_video import ClipVideoClassificationPipeline, ZeroShotVideoClassificationPipeline
from .remote_code.processing_sfar import SfarProcessor
from .remote_code.video_decoding import VideoDecodingError, read_video_pyav
from .remote_code.video_processing_sfar import SfarVideoProcessor, tsn_frame_indices

AutoConfig.register("sfar", SfarConfig, exist_ok=True)
AutoModel.register(SfarConfig, SfarModel, exist_ok=True)
AutoModelForVideoClassification.register(SfarConfig, SfarForVideoClassification, exist_ok=True)
AutoVideoProcessor.register(SfarConfig, SfarVideoProcessor, exist_ok=True)
AutoProcessor.register(SfarConfig, SfarProcessor, exist_ok=True)
# ALT reads videos with SFAR's processors
AutoConfig.register("alt_video", AltConfig, exist_ok=True)
AutoModel.register(AltConfig, AltModel, exist_ok=True)
AutoModelForVideoClassification.register(AltConfig, AltForVideoClassification, exist_ok=True)
AutoVideoProcessor.register(AltConfig, SfarVideoProcessor, exist_ok=True)
AutoProcessor.register(AltConfig, SfarProcessor, exist_ok=True)
# The zero-shot task by name, also for a model object or a folder saved before folders registered their pipelines
# (a folder that registers them builds its own with `trust_remote_code=True`).
PIPELINE_REGISTRY.register_pipeline(
    "zero-shot-video-classification",
    pipeline_class=ZeroShotVideoClassificationPipeline,
    pt_model=AutoModelForVideoClassification,
    type="video",
)

__all__ = [
    "ALT_PROMPT_TEMPLATES",
    "AltConfig",
    "AltForVideoClassification",
    "AltLabelSet",
    "AltModel",
    "AltModelOutput",
    "AltVideoClassifierOutput",
    "alt_config_from_clip",
    "clip_to_alt_state_dict",
    "convert_clip_to_alt",
    "ACTIONCLIP_PROMPT_TEMPLATES",
    "ClipVideoConfig",
    "DEFAULT_PROMPT_TEMPLATE",
    "SFAR_VARIANTS",
    "SfarLabelSet",
    "average_over_views",
    "ClipVideoClassificationPipeline",
    "ZeroShotVideoClassificationPipeline",
    "SfarConfig",
    "SfarForVideoClassification",
    "SfarModel",
    "SfarModelOutput",
    "SfarProcessor",
    "SfarVideoClassifierOutput",
    "SfarVideoProcessor",
    "VideoDecodingError",
    "actionclip_loss",
    "class_name_to_text",
    "clip_to_sfar_state_dict",
    "convert_clip_to_sfar",
    "read_video_pyav",
    "sfar_config_from_clip",
    "sfar_loss",
    "text_prompt_perplexity",
    "tsn_frame_indices",
]
