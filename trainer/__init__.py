"""dmdt-train: build dmdt images, fit and evaluate the paper's networks, publish models."""
