"""Running trained models without training.

- `batches`: turning samples into the ``name -> ModalityBatch`` inputs of a model.
- `collect`: the low-level loop over batches that collects raw output tensors.
- `predict`: the user-facing `Predictor`, from artifact and inputs to decoded `Prediction`s.
"""
