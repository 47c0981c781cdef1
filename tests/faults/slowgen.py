"""A generator plug-in for the fault suite, loaded by a real ``jobtail serve`` through the
``jobtail.generators`` entry point (harness.py writes the dist-info that declares it).

It logs ``FAULT_LINES`` lines (padded with ``FAULT_PAD`` dots), one every ``FAULT_PACE``
seconds (the job's own pace, not a synchronisation), after ``FAULT_GO`` exists if that is set
(so a test can have its viewers in place first), and journals each message after ``log()``
returned, so a test can check that every line the job logged is in the store exactly once, in
order.
"""

from __future__ import annotations

import os
import time

from jobtail.jobs.generators import GeneratedCode, Generator
from jobtail.logger import RunLogger
from jobtail.uploads import ParsedUpload


class SlowGenerator(Generator):
    name = "slow"
    description = "logs numbered lines at a steady pace (fault suite)"

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        lines = int(os.environ.get("FAULT_LINES", "100"))
        pace = float(os.environ.get("FAULT_PACE", "0.01"))
        pad = "." * int(os.environ.get("FAULT_PAD", "0"))  # longer lines: more bytes per viewer
        go = os.environ.get("FAULT_GO")  # the job starts once this file exists (bounded wait)
        deadline = time.monotonic() + 60
        while go and not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.01)
        journal = os.open(os.environ["FAULT_JOURNAL"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            for n in range(1, lines + 1):
                message = f"line {n}{pad}"
                log.info(message, n=n)
                os.write(journal, f"{log.run_id} {message}\n".encode())
                time.sleep(pace)
        finally:
            os.close(journal)
        return GeneratedCode(code="VALUE = 1\n", filename="slow.py")
