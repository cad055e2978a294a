"""Where the best model's accuracy stops: a learning curve and the errors by data quality
(docs/ceiling.md)."""
