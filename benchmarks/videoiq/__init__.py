"""VideoIQ benchmark: accuracy against BitOPs and the GFLOPs proxy (learned policy, uniform bit-widths, full
precision, random policies), CPU time per clip of dynamic inference, and the policy's overhead."""
