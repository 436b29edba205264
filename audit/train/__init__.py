"""Training: the batched trainer that fits many small networks at once."""
