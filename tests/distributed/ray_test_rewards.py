"""A reward for the distributed tests, importable on the Ray workers (they get the driver's path).

It scores a hash of the text (so scores differ between samples), records what each rank was
given to score, and can kill its own worker process once, at a chosen point of the prompt stream.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path


class RecordingReward:
    def __init__(self, log: Path, kill_from_uid: int | None = None, kill_marker: Path | None = None) -> None:
        self.log, self.kill_from_uid, self.kill_marker = Path(log), kill_from_uid, kill_marker

    def __call__(self, prompts, responses, metadata):
        uids = metadata["prompt_uid"]
        if self.kill_from_uid is not None and min(uids) >= self.kill_from_uid and self._claim_the_kill():
            os.kill(os.getpid(), signal.SIGKILL)  # like the OOM killer: no exception, no cleanup
        with self.log.open("a") as fh:
            fh.writelines(json.dumps([uid, text]) + "\n" for uid, text in zip(uids, responses))
        return [(sum(map(ord, text)) % 11) / 10.0 for text in responses]

    def _claim_the_kill(self) -> bool:
        """Only the first caller ever kills (O_EXCL is atomic across processes); it writes the time."""
        try:
            fd = os.open(self.kill_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.write(fd, str(time.time()).encode())
        os.close(fd)
        return True


def recorded(log: Path) -> list[tuple[int, str]]:
    """Every (prompt uid, response) scored, sorted: the same list means the same samples."""
    return sorted(tuple(json.loads(line)) for line in Path(log).read_text().splitlines())
