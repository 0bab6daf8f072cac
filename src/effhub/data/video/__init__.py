"""Video data: generated clips whose frames differ in how much class evidence they carry (`clips`), readers of the
frame-folder + list-file layout of ActivityNet-v1.3, FCVID, Mini-Kinetics and Mini-Sports1M (`frames`), and video
files through PyAV (`decode`, the `video` extra)."""
