"""The CLIP teacher's gates: what its frozen features carry for DualCoOp and DIME-FM (see docs/clip-teacher.md)."""
