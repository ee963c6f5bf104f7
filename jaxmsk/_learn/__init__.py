"""Learning: the predictor, its physics-informed loss, fitting, transfer and cross-validation.

Public names are re-exported by `jaxmsk`: `Predictor`, `LossWeights`, `SubjectAdjustment`,
`evaluate`, `train`, `personalise`, `run_fold`, `TransferConfig`, `fit_stacked`,
`train_generic_folds`.
"""
