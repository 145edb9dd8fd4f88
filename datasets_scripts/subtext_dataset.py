"""Kept so that `datasets_scripts.subtext_dataset` imports keep working: the sub-text dataset I/O lives in the library,
`modeling_sfar.subtext_dataset` (training and evaluation load sub-texts, and the library never imports this package).
"""

from modeling_sfar.subtext_dataset import *  # noqa: F403
from modeling_sfar.subtext_dataset import __all__, config_metadata  # noqa: F401
