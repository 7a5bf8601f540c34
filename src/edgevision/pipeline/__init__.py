"""Video and image pipelines: sources, stages and sinks."""
