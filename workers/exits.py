"""Exit codes of a worker child, read by the supervisor."""

from __future__ import annotations

EXIT_RESET = 0  # the target was reset under us: a clean stop, not restarted
EXIT_BUG = 1  # an error no policy covers: restarted (crash-loop limit applies)
EXIT_OUTPUT = 74  # EX_IOERR: the output cannot take lines: stop the pod, exit 1
