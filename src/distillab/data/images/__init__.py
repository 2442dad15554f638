"""Image data sets: scikit-learn's digits (and their domains), MNIST and Fashion-MNIST."""
