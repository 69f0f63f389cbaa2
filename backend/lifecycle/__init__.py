"""Model lifecycle: the library home, the one-step index pipeline, the starter model, model switching."""
