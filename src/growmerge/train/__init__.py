"""Training: continued pretraining with replay, the WSD schedule, the FLOP ledger, exact resume.

    from growmerge.train.loop import train          # train(init, mixture, spec, out_dir, tokenizer_dir, meta)
    from growmerge.train.spec import TrainSpec       # the run's settings (strict pydantic), PRESETS
    from growmerge.train.flops import flops_per_token
    from growmerge.train.schedule import wsd_lambda, wsd_phases

Modules: ``spec`` (settings, presets, fingerprint), ``stream`` (seeded data order over a mixture),
``loss`` (fused chunked cross-entropy), ``schedule``, ``flops``, ``checkpoint`` (HF exports + DCP
states, SIGKILL-safe), ``distributed`` (torchrun DDP / FSDP2), ``observe`` (progress bar,
TensorBoard, train_log.jsonl), ``loop`` (the loop), ``job`` + ``commands`` (the CLI:
``growmerge train JOB.yaml``; ``torchrun --nproc-per-node N -m growmerge.train JOB.yaml [--fsdp]``),
``launch`` (``torchrun_command``: the torchrun argv for one node or several, c10d rendezvous).
"""
