"""A Ray pool behind the daemon: `voidlink serve --cluster ray://HOST:PORT | auto`.

The daemon stays the front end (gRPC, job store, events, cancel, resume); `RayExecutor` hands each
job the scheduler claims to a Ray actor (`PoolWorker`), which keeps its backends loaded between
jobs. One CPU actor per `--cluster-workers` slot runs the classical backend; one actor per GPU of
the cluster runs VOID (and classical when no CPU actor is free).

Workers share storage with the daemon by default: they read the sources and write the outputs at
the paths of the job, in the job's staging folder, exactly as the daemon would. A worker that dies
mid-job leaves its finished frames staged (each written to a temporary name, then renamed); the job
goes to another worker, whose `run_job` renders only the frames not staged yet. With
`--cluster-storage private` the frames travel through Ray instead (see `private`).

A long classical job is split into segments that run on several workers at once; each stages its
own frames, fed the backend's temporal context beyond its ends so every frame comes out as one
uninterrupted run makes it, and the daemon then moves them into place. VOID jobs are not split: a
VOID segment's frames depend on all of its frames (its `temporal_context` is unbounded), so a split
would change the result.

    options     the flags checked (`parse_cluster`, `pool_options`), and Ray imported (`import_ray`)
    messages    the typed messages of the worker <-> daemon link
    segments    splitting a job (`plan_segments`, `run_key`), its segments' progress as one, their commit
    worker      `PoolWorker`, the Ray actor, and the recorder that buffers a run's events
    placement   `WorkerRecord`, the daemon's view of a worker, and `place`: which idle worker a job gets
    lifecycle   `WorkerPool`: Ray joined or started, workers spawned, awaited, replaced, lent, closed
    private     private storage: the job's inputs hashed, sent to a worker's cache, its frames received
    relay       following one run: polls, event replay, the outcome as a result or an error
    executor    `RayExecutor`: the scheduler's executor, segments side by side, a lost worker's run retried

Nothing is imported here, and this package only when the daemon is told to front a cluster: a
daemon without `--cluster` starts without Ray installed.
"""
