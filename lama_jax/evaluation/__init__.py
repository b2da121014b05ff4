"""Evaluation: the paper's metrics as evaluators over sampled validation layouts, and Sec. 3's experiment."""
