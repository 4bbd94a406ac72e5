"""growmerge: grow small language models, adapt them to new languages, merge them, evaluate them."""

__version__ = "0.1.0"
