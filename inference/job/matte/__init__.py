"""A matte job: an object carried from a user's prompts through a range of frames of a plate.

    prepare   the job checked against the disk when it is submitted (`prepare.prepare_matte`)
    frames    the plate's frames as a tracker reads them (display-referred RGB 0-1, a small cache)
    write     each frame's matte (object, affected, quadmask) staged as it comes
    run       the steps in order: stage, track, propose, quadmask and checks, describe, commit
"""
