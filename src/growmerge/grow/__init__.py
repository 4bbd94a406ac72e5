"""Growing models function-preservingly: HyperCloning (width ×k, `growmerge.grow.hyperclone`) and depth growth
(layers ×k, `growmerge.grow.depth`)."""
