"""Kept so that `datasets_scripts.tpp_selection` imports keep working: TPP selection lives in the library,
`modeling_sfar.tpp_selection` (the demo recipe selects sub-texts, and the library never imports this package).
"""

from modeling_sfar.tpp_selection import *  # noqa: F403
from modeling_sfar.tpp_selection import __all__  # noqa: F401
