"""The DeepMovie hybrid: PMF whose item factors are pulled toward a neural encoder of item documents."""
