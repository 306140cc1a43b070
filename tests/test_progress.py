import io

from lib.progress import Progress, format_duration


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_at_most_every_interval_when_not_a_terminal():
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("epoch 1/2", total=10, stream=stream, interval=30, clock=clock)
    for _ in range(9):
        clock.now += 10
        progress.update(items=4, loss=0.5)
    progress.update(items=4, loss=0.25)  # the last step always prints
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4  # at 30 s, 60 s, 90 s and the end
    assert "\r" not in stream.getvalue()
    assert lines[-1].startswith("epoch 1/2 10/10 loss=0.2500") and "0.4 img/s" in lines[-1]
    assert lines[0].startswith("epoch 1/2 3/10") and "eta 1:10" in lines[0]


def test_live_bar_on_a_terminal():
    clock, stream = FakeClock(), Tty()
    progress = Progress("eval", total=2, stream=stream, clock=clock)
    clock.now = 1
    progress.update(items=1)
    clock.now = 2
    progress.update(items=1)
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and "[####################] eval 2/2" in text


def test_format_duration():
    assert format_duration(65) == "1:05" and format_duration(3725) == "1:02:05"


def test_a_resumed_run_counts_steps_images_and_time_from_its_start():
    clock, stream = FakeClock(), io.StringIO()
    first = Progress("train", total=10, stream=stream, interval=1000, clock=clock)
    for _ in range(4):
        clock.now += 10
        first.update(items=4)
    state = first.state_dict()
    assert state == {"done": 4, "items": 16, "seconds": 40.0}

    clock.now = 500.0  # a later process
    resumed = Progress("train", total=10, stream=stream, interval=0, clock=clock, done=state["done"],
                       items=state["items"], elapsed=state["seconds"])
    clock.now += 10
    resumed.update(items=4)
    line = stream.getvalue().splitlines()[-1]
    # 5 of 10 steps in 50 s: 20 images / 50 s, 50 s left; not 1 of 6 steps in 10 s
    assert line.startswith("train 5/10") and "0.4 img/s" in line and "eta 0:50" in line
    assert resumed.elapsed() == 50.0
