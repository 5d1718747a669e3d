"""Model-based document scoring: classifier backends, their shared preprocessing, training."""
