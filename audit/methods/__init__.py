"""One module per audit method; each module's name is its method's name."""
