"""`python -m cjo.demo` (what `make demo` runs)."""

from cjo.demo.walkthrough import main

main()
