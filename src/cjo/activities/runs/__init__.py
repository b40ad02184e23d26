"""Journey runs: enrolments and the step log, campaigns' states, entering users and
routing their events."""
