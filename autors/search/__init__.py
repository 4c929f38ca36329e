"""The architecture search: NNI strategies on a Ray execution engine, crash-safe run folders.

    from autors.search.runner import SearchOptions, run_search
    outcome = run_search(load_task("task.yaml"), SearchOptions())

Modules (one job each; only `nni_adapter` imports NNI):
    catalog      space and strategy names a task may use
    nni_adapter  NNI strategies by name, the space wrapper, the ExecutionEngine on the broker
    broker       ids, seeds, budget, dedup, judging and recording of trials
    prescreen    params/FLOPs limits checked on the driver before a trial is trained
    pool         Ray tasks: concurrency, resources, timeouts, object-store inputs
    cluster      local Ray instance on loopback, or an existing cluster (--address, token
                 auth, --ship-code); see docs/cluster.md
    limits       per-trial memory limit in the worker (search.memory_per_trial_mb)
    ray_pids     the local instance's pids in the run folder; stops a killed driver's leftovers
    scoring      objective + constraints -> one score; Pareto front
    records      TrialRecord, one line of trials.jsonl
    search_folder  the search's run folder (append-only + atomic writes, repair on resume)
    resume       what --resume checks and restores
    final        top-k retraining on several seeds, tested once (training.trial's path)
    report       ranking, leaderboard rows, final statistics
    summary      summary.json
    plots        progress.png, pareto.png
    progress     live display / log lines;  tables: rich leaderboard table
    runner       run_search: the whole search
"""
