"""The meaning of a journey's steps, shared by every interpreter and every step activity.

- `run`: what a run knows (the user, the trigger, earlier steps' results) and the records
  it writes; the one builder of the expression roots.
- `contracts`: what each step's activity takes and gives.
- `semantics`: for each step type, the requests it makes, the result it gives and where
  each outcome leads.
- `rules`: holdout, split variants and clocks, as pure functions of their inputs.

Pure and deterministic (no I/O, no clock): workflows and activities both import it.
"""
