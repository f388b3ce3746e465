"""The frame path: what happens to a batch of frames on the device (the Enhancer, transfers, the
model runner, DINO cache, region reuse, exposure, temporal smoothing, HDR conversion, runtimes,
threads, options). It knows frames only; the jobs around it (files, streams, folders) are in
:mod:`vidllie.jobs`."""
