"""`call` steps: the registry through which engineers add activities, and its runner."""
