"""The architecture search: NNI or Optuna strategies on a Ray execution engine, crash-safe run
folders.

    from autors.search.runner import SearchOptions, run_search
    outcome = run_search(load_task("task.yaml"), SearchOptions())

Modules (one job each; only `nni_adapter` imports NNI, only `optuna_adapter` imports Optuna):
    catalog      space and strategy names a task may use (and which adapter drives each)
    driver       starts the task's strategy through its adapter (library-neutral)
    nni_adapter  NNI strategies by name, the space wrapper, the ExecutionEngine on the broker
    optuna_adapter  Optuna samplers (nsga2, motpe, optuna_tpe) by ask/tell on the broker
    front        objectives, Pareto front, hypervolume, the final phase's spread (knee, extremes)
    broker       ids, seeds, budget, dedup, judging and recording of trials
    prescreen    params/FLOPs limits checked on the driver before a trial is trained
    pool         Ray tasks: concurrency, resources, timeouts, object-store inputs
    cluster      local Ray instance on loopback, or an existing cluster (--address, token
                 auth, --ship-code); see docs/cluster.md
    limits       per-trial memory limit in the worker (search.memory_per_trial_mb)
    ray_pids     the local instance's pids in the run folder; stops a killed driver's leftovers
    scoring      objective + constraints -> one score
    records      TrialRecord, one line of trials.jsonl
    search_folder  the search's run folder (append-only + atomic writes, repair on resume)
    resume       what --resume checks and restores
    final        top-k / front-spread retraining on several seeds, tested once
    report       ranking, leaderboard rows, final statistics
    summary      summary.json
    plots        progress.png, pareto.png
    progress     live display / log lines;  tables: rich leaderboard table
    runner       run_search: the whole search
"""
