"""What the tests share: shots written to disk, daemons to run, faults to inject, host fakes."""
