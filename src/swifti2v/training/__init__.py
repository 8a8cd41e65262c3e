"""Training: stage-transition conditions, CSG training windows, the accelerate engine, the two trainers."""
