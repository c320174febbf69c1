"""Self-check without any model files: a small encoder and a decoder built from tfcore
layers on random weights, checked against the same math in float64 NumPy, then timed."""

NAME, HELP = "check", "self-check tfcore's layers against float64 NumPy on random weights, time them"


def add_arguments(p):
    p.add_argument("--threads", type=int, default=None, help="threads to compute with (default: all CPUs)")


def run(args):
    from .._demo import run_demo

    return run_demo(threads=args.threads)
