"""Farm jobs: voidlink removals as Open Job Description templates for render farms.

    from voidlink.bridge.farm import read_job_spec, job_template
    template = job_template([FarmShot("sh010", read_job_spec("sh010.json"))])

Each task is one ordinary `voidlink remove` command line, so any farm that runs a command per task
can run it; the template's job environment starts a voidlink daemon on the worker for the session.
"""
