"""Print how tfcore runs here: versions, oneDNN library and ISA, kernels, dtypes, threads."""

NAME, HELP = "info", "print the configuration (versions, oneDNN, ISA, dtypes, threads)"


def add_arguments(p):
    pass


def run(args):
    import tfcore

    tfcore.show_config()
    return 0
