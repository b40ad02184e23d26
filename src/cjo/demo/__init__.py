"""`make demo`: the whole stack on the bundled examples, with stand-in channel providers."""
