"""Growing models: HyperCloning (width ×k, function-preserving). See `growmerge.grow.hyperclone`."""
