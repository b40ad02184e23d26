"""The control plane: what operators and systems manage through the API, and the figures
they read. Only the API and the CLI use it; journeys never do."""
