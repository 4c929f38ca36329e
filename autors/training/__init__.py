"""Training one architecture: loop, metrics, cost (params, FLOPs, latency), run folders.

    metrics.py     OA, AA, kappa, per-class accuracy / IoU, mIoU, confusion matrix, ECE
    cost.py        measure_cost(model, in_channels, size) -> Cost
    batches.py     loaders, device choice, modality dropout
    evaluate.py    evaluate(model, data, "val" | "test") -> metrics dict
    loop.py        train_model(task, arch, data, seed) -> TrainOutcome
    trial.py       run_trial(task_dict, arch_dict, seed, data, trial_id) -> TrialResult
    run_folder.py  the run folder layout: write_run, read_run -> RunFolder
    train_run.py   train_and_write(task, arch, data, seed, out, test=...) -> TrainRun
"""
