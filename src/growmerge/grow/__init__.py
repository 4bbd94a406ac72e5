"""Growing models: HyperCloning (width ×k, function-preserving)."""

from growmerge.grow.hyperclone import clone_dir, hyperclone, max_logit_diff

__all__ = ["clone_dir", "hyperclone", "max_logit_diff"]
