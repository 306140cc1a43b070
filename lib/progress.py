"""Progress reporting that suits both a terminal and a cron log.

On a TTY the line is redrawn in place; otherwise a plain line is printed at most
every `interval` seconds (and at the end), so logs stay short and greppable.
"""
import sys
import time


def format_duration(seconds):
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """`total` steps; `done`, `items` and `elapsed` seconds of them may come from an earlier, resumed part."""

    def __init__(self, label, total, unit="img", stream=None, interval=30.0, clock=time.monotonic, done=0, items=0,
                 elapsed=0.0):
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stdout
        self.interval = interval
        self.clock = clock
        self.live = self.stream.isatty()
        self.last_print = clock()
        self.start = self.last_print - elapsed
        self.done = done
        self.items = items

    def elapsed(self):
        return self.clock() - self.start

    def state_dict(self):
        """What a resumed run needs to go on counting: the steps, samples and seconds so far."""
        return {"done": self.done, "items": self.items, "seconds": self.elapsed()}

    def update(self, steps=1, items=0, **values):
        """Record `steps` finished steps that processed `items` samples; values are shown as k=v."""
        self.done += steps
        self.items += items
        now = self.clock()
        finished = self.done >= self.total
        if self.live or finished or now - self.last_print >= self.interval:
            self.last_print = now
            self._print(now, values, finished)

    def _print(self, now, values, finished):
        elapsed = max(now - self.start, 1e-9)
        rate = self.items / elapsed
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        shown = " ".join(f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}"
                         for key, value in values.items())
        text = f"{self.label} {self.done}/{self.total} {shown} {rate:.1f} {self.unit}/s eta {format_duration(eta)}"
        if self.live:
            width = 20
            filled = int(width * self.done / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\033[K")
            if finished:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
