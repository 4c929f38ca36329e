"""Training one architecture: loop, metrics, cost (params, FLOPs, latency), train folders.

    metrics.py       OA, AA, kappa, per-class accuracy / IoU, mIoU, confusion matrix, ECE
    cost.py          measure_cost(model, in_channels, size) -> Cost
    batches.py       loaders, device choice, modality dropout
    evaluate.py      evaluate(model, data, "val" | "test") -> metrics dict
    loop.py          train_model(task, arch, data, seed) -> TrainOutcome
    result.py        TrialResult, Cost (plain data), error_text
    trial.py         the one trial path: train_evaluate(task, arch, data, seed, test=...) ->
                     TrainedModel; run_trial(task_dict, arch_dict, seed, data, trial_id) ->
                     TrialResult (a search trial, in a Ray worker)
    train_folder.py  a trained model's run folder: train_and_write (`autors train`),
                     write_train_folder, read_train_folder -> TrainFolder
"""
