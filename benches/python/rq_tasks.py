"""Job functions for rq_baseline.py. RQ workers import jobs by dotted path
("rq_tasks.square"), so this module must be importable by the workers."""


def square(x):
    return x * x
