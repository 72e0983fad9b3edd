"""Matrix factorization: embedding dot products (SGD/Adam/Adagrad), SVD++, and PMF by ALS."""
