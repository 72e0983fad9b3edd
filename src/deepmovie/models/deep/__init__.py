"""Deep models: deep matrix factorization (MLP over embeddings) and neural collaborative filtering."""
