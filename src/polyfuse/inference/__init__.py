"""Running a trained model over data: batches in, collected outputs and predictions out."""
