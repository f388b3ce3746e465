"""The jobs around the frame path: what feeds :class:`~vidllie.pipeline.enhancer.Enhancer` from
files, pipes, live streams and folders, and what survives their failures.

File runs (``video_job``), the decode/compute/encode threads (``streaming``), live streams and
segments (``live``), signals (``interrupts``), inputs and outputs of a command (``plan``), batch
jobs on Ray (``batch``, ``manifest``, ``batch_report``), the benchmark (``bench``, ``load``) and
the preview (``preview``, ``sheet``). The jobs import the frame path (``vidllie.pipeline``) and
the video layer; neither imports the jobs.
"""
