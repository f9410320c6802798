"""Charts and the sweep report: performance and explainability per model type (DESIGN §8).

Sits on top of the pipeline: the sweeper and the CLI call it, nothing in data -> features -> backtest -> tracking
imports it. matplotlib and shap load only when a chart is drawn. A chart that fails is a logged warning, never a
failed trial (`safely`).
"""
