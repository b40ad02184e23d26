"""Channel providers: one module per kind of provider."""
