"""Minimal-pair generation: one word changed so that it breaks agreement or government (``rules/``,
per language), or in exactly one morphological feature (``generate.py``, the paper's method)."""

from growmerge.evaluate.perturb.generate import generate_pairs, read_sentences
from growmerge.evaluate.perturb.inflector import (DEFAULT_BACKEND, INFLECTORS, Inflector, UniMorphInflector,
                                                  get_inflector)

__all__ = ["generate_pairs", "read_sentences", "Inflector", "UniMorphInflector", "get_inflector", "INFLECTORS",
           "DEFAULT_BACKEND"]
