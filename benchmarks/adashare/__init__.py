"""AdaShare benchmark: backbone parameters, per-task inference time against executed multiply-adds, and multi-task
quality (Delta_T) of AdaShare, hard sharing and single-task models on the generated scenes."""
