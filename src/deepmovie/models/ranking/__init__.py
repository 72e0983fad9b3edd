"""Models of the implicit task: they learn which items each user interacted with and rank the rest."""
