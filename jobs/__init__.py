"""Background jobs: the release computations that outlast a request, their resource, and the
engines that run them (see :mod:`jobs.runner` and :mod:`jobs.queue`)."""
