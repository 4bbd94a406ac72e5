"""The built-in merge methods, one module per family; each module registers its methods
(``growmerge.merge.registry``), and every module here is imported when the registry is first read,
so a new method is one new file in this folder.

Each method has two implementations, one per numerical mode:

* ``compat`` (``--mergekit-compat``) reproduces mergekit 0.1.5 bit for bit: inputs arrive cast to
  the config dtype and every operation runs in that dtype, in mergekit's order (linear accumulates
  in float32); TIES keeps the first ``int(density*numel)`` indices of
  ``argsort(|d|.float(), descending=True)`` -- the unstable CPU sort decides which tied magnitudes
  survive, so nothing cheaper reproduces it; DARE masks are ``bernoulli(density)`` in float32 from
  one generator per merge seeded once, tensors in lexicographic order, models in config order.
  Full reductions (DARE's L1 norms, MultiSlerp's norms) depend on torch's thread count: compare
  with mergekit at the same OMP_NUM_THREADS. SLERP follows mergekit's formula but not its chunked
  norms (it is not one of the paper's methods).
* ``fast`` (the default; helpers in ``merge.fast``) rounds the inputs to the config dtype as
  mergekit does on load, computes in float32 in chunks and casts the result to the output dtype. It differs from
  compat, by design, in:
    - rounding: float32 arithmetic instead of float16/bfloat16 (about one output ulp);
    - TIES: the same count k, chosen by threshold -- every |d| above the k-th largest value (an
      in-place introselect) plus the lowest-index elements equal to it. Deterministic; compat's
      sort may keep other tied elements, and float32 deltas tie less often than float16 ones;
    - DARE: masks from numpy's PCG64 seeded by (seed, tensor name, model index): raw 64-bit
      outputs split into 8-bit (density a multiple of 2^-8) or 16-bit draws, kept when below
      round(density*2^16) scaled to that width (``fast.Dropout`` has the exact recipe) -- ~20x
      faster than torch's bernoulli and independent of tensor order, so a grid cell equals the
      single merge; masks therefore differ from compat's (same distribution to within 2^-17, same
      L1 rescale, whose sums are float32 per chunk accumulated in float64);
    - MultiSlerp: computed in closed form from the Gram matrix of the task vectors (see
      ``methods.multislerp``); never NaN, where mergekit's float16 epsilon rounds to 0 and zero
      task vectors give 0/0. A zero weighted mean falls back to the weighted linear mean for any number
      of models (mergekit: only for two; compat raises a GrowmergeError as mergekit does).
  tests/test_merge.py holds the default mode to 2 float16 ulps of compat (TIES: >= 99% of elements;
  DARE: the L1 size of the merged task vector within 3%).
"""
