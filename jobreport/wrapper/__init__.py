"""The wrapper behind ``jobreport run``: the child process (``child``), its process tree
(``tree``), the output relay and tail (``relay``), ``--lock`` (``lock``), the metrics file a
command writes (``metricsfile``), and the core that runs one command as one run of a job and
returns its exit code (``wrapper``)."""
