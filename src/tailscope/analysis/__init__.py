"""The analysis stage: plan the matrices of a source, run spectrum -> fit -> row for each, keep the rows.

`pipeline` holds `analyze`/`describe`, `matrix` the work on one matrix, `executors` the in-process
streaming runner (threads, device batches, resume), `parallel` the process pool and Ray runners.
"""
