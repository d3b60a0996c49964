"""One job's work, one module per step: the daemon's job pipeline.

    clips      the job's clips resolved against the disk, and reading their frames
    outputs    where the job's files go (final patterns, staging folder name, files not voidlink's)
    prepare    PreparedJob and `prepare_job`: the job checked against the disk, no pixels read
    mattes     the mattes placed on the plate: one frame's quadmask
    analyse    one pass over the mattes: the crop/scale plan, empty frames, quadmask files
    render     feeding the backend, compositing over the plate, writing staged frames
    describe   the JobResult and the provenance its frames record
    staging    staged paths, the commit marker, the roll-forward commit, discard, crash recovery
    control    what the scheduler and a running job share: the cancel flag, the progress sink
    run        `run_job`: the steps above in order, and `commit_segments` for a pool

Nothing is imported here: each caller imports the step it needs (and the import graph stays a tree).
"""
